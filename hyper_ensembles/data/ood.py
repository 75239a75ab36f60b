"""Out-of-distribution evaluation sets (SVHN for the CIFAR models) as named evaluation sets.

This file owns which OOD sets exist and how they are named. `config.data.ood_datasets` lists TFDS
names (default none; the paper's protocol uses `svhn_cropped`, whose test split has 26 032 images);
each set's test split becomes evaluation set `ood_<name>` (e.g. `ood_svhn_cropped`). Its images
must have the training data's shape; its labels are its own and only mark the examples as
out-of-distribution — evaluation.py scores OOD sets against the in-distribution `test` set (AUROC,
AUPR, FPR at 95 % TPR from the ensemble's max probability and predictive entropy) and never
computes accuracy on them.
"""

from __future__ import annotations

from hyper_ensembles.data import tfds_source
from hyper_ensembles.data.dataset import ArraySplit

PREFIX = 'ood_'
SVHN = 'svhn_cropped'


def set_name(tfds_name: str) -> str:
  """Evaluation-set name of an OOD dataset: `ood_<tfds name>` ('/' and ':' replaced by '_')."""
  return PREFIX + tfds_name.replace('/', '_').replace(':', '_')


def is_ood_set(name: str) -> bool:
  """Whether an evaluation-set name is an OOD set (scored against `test`, no accuracy)."""
  return name.startswith(PREFIX)


def load_ood(data_config, image_shape: tuple[int, int, int]) -> dict[str, ArraySplit]:
  """`{ood_<name>: test split}` for every TFDS name in `config.data.ood_datasets`."""
  out = {}
  for name in data_config.get('ood_datasets', ()) or ():
    split = tfds_source.load_tfds_eval_split(name, 'test', data_config.get('tfds_data_dir'))
    if split.images.shape[1:] != tuple(image_shape):
      raise ValueError(
          f'OOD dataset {name!r} has {split.images.shape[1:]} images; the training data has '
          f'{tuple(image_shape)}')
    out[set_name(name)] = split
  return out
