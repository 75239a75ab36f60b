"""Dataset names users type (docs/design.md §9) → loaders, and the data config they read.

This file owns the mapping from a dataset name to the function that loads it into host memory, and
the contract for the `data` section of the config. Every loader takes that section and returns a
`Dataset` (uint8 images [N, H, W, C], int32 labels, per-channel mean / std on the [0, 1] scale).

Data config fields (an `ml_collections.ConfigDict`; all must be present):

  source: str = 'default'. Where the bytes come from. 'default' is each dataset's own default;
    digits supports only 'default' (embedded in scikit-learn); fashion_mnist 'default' = 'idx'
    (original IDX files) or 'tfds'; cifar10 / cifar100 'default' = 'tfds'. Any other value is a
    ValueError naming the sources that dataset supports.
  fashion_mnist_dir: str = '/usr/share/datasets/fashion-mnist'. Directory with the four
    Fashion-MNIST IDX files, gzipped or not (Debian package `dataset-fashion-mnist`).
  tfds_data_dir: str | None = None. TFDS data directory; None for TFDS's default.
  validation_fraction: float = 0.05. Fraction of the training split held out as validation, in
    [0, 1): the last fraction, unshuffled, for fashion_mnist and CIFAR; for digits a stratified
    seeded draw of at least 0.15 (see `digits`).
  split_seed: int = 0. Seed of the digits train / validation / test split (the other datasets'
    splits are fixed by their sources).

Optional field (absent means False), changing what the model trains on:

  train_on_validation: bool = False. True trains on train ∪ validation: the train split becomes
    the train images followed by the validation images (a fixed order, so the data order stays a
    pure function of the seed), for retraining chosen settings on all the labelled data (hyper-deep
    step 4). The validation split is kept as it is, so validation metrics are still reported but
    are no longer held out. The normalisation statistics stay those of the original train split,
    so a retrained network preprocesses its inputs exactly as the network it replaces.

Optional fields (absent means off), adding evaluation sets to `Dataset.extra_eval`:

  corruptions: str = ''. Corrupted test sets, named `corrupt_<type>_<s>`: '' (off), 'official',
    'all' or a comma list of types (data/corrupted.py). cifar10 / cifar100 read CIFAR-10-C /
    CIFAR-100-C; digits / fashion_mnist generate theirs from their test split
    (data/image_corruptions.py).
  corruption_severities: tuple = (1, 2, 3, 4, 5).
  cifar100_c_dir: str | None. Directory of the original CIFAR-100-C `.npy` release.
  ood_datasets: tuple of names, e.g. ('svhn_cropped',) or ('mnist', 'digits28'): OOD sets named
    `ood_<name>` (data/ood.py lists the built-in ones per dataset), scored against the test set.
  mnist_dir: str = '/usr/share/datasets/mnist'. MNIST IDX files for `ood_datasets=('mnist',)`;
    TFDS `mnist` when the directory does not exist (data/mnist.py).
  generated_eval_seed: int = 0. Seed of the generated evaluation sets (digits / fashion_mnist
    corruptions, synthetic OOD images).

TensorFlow is imported only when a TFDS-backed loader runs, so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

from hyper_ensembles.data import cifar, corrupted, digits, fashion_mnist, ood
from hyper_ensembles.data.dataset import ArraySplit, Dataset

DATASETS: dict[str, Callable[[ml_collections.ConfigDict], Dataset]] = {
    'digits': digits.load,
    'fashion_mnist': fashion_mnist.load,
    'cifar10': cifar.load_cifar10,
    'cifar100': cifar.load_cifar100,
}


def load_dataset(name: str, data_config: ml_collections.ConfigDict) -> Dataset:
  """Loads dataset `name` as `data_config` (fields in the module docstring) describes.

  Raises:
    ValueError: unknown dataset name or unsupported `data_config.source`.
  """
  if name not in DATASETS:
    raise ValueError(
        f"Unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
  dataset = DATASETS[name](data_config)
  if data_config.get('train_on_validation', False):
    dataset = with_validation_in_train(dataset)
  extra = {**corrupted.load_corrupted(name, data_config, dataset.test),
           **ood.load_ood(data_config, dataset.info.image_shape, name, len(dataset.test))}
  if not extra:
    return dataset
  return dataclasses.replace(dataset, extra_eval={**dataset.extra_eval, **extra})


def with_validation_in_train(dataset: Dataset) -> Dataset:
  """`dataset` with train = train ∪ validation (train first); validation and `info` unchanged.

  `info` (and so the normalisation mean / std) is deliberately not recomputed: see
  `train_on_validation` in the module docstring.
  """
  train, validation = dataset.train, dataset.validation
  merged = ArraySplit(np.concatenate([train.images, validation.images]),
                      np.concatenate([train.labels, validation.labels]))
  return dataclasses.replace(dataset, train=merged)
