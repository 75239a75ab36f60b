"""CIFAR-10 and CIFAR-100 through TFDS, with the official protocol's split and normalisation.

This file owns the CIFAR facts: 32×32×3 images, 10 / 100 classes, the per-channel normalisation
constants, and `crop_flip` augmentation (pad 4, random 32×32 crop, horizontal flip; applied on
device to the train split only). Split (docs/design.md §6): validation is the last
`validation_fraction`
(default 5 %) of the TFDS train split, unshuffled — 47 500 train / 2 500 validation / 10 000 test.

Normalisation constants are the mean and population std of each channel over all pixels of the
50 000 training images, on the [0, 1] scale (the convention uncertainty-baselines adopted:
np.mean / np.std over axes (0, 1, 2)). They are fixed constants rather than computed from our 95 %
train split so that a model is normalised the same way whatever the validation fraction. Note the
official code applies the CIFAR-10 constants to CIFAR-100 as well; we use CIFAR-100's own (the
difference is under 0.02 per channel and is absorbed by the first convolution anyway).
"""

from __future__ import annotations

import ml_collections

from hyper_ensembles.data import tfds_source
from hyper_ensembles.data.dataset import Dataset, DatasetInfo

SOURCES = ('default', 'tfds')
IMAGE_SHAPE = (32, 32, 3)
AUGMENTATION = 'crop_flip'

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)

# name → (num_classes, mean, std). The TFDS dataset names equal ours.
_SPECS = {
    'cifar10': (10, CIFAR10_MEAN, CIFAR10_STD),
    'cifar100': (100, CIFAR100_MEAN, CIFAR100_STD),
}


def load_cifar(name: str, data_dir: str | None, validation_fraction: float) -> Dataset:
  """CIFAR-10 or CIFAR-100 ('cifar10' / 'cifar100') from TFDS.

  Args:
    name: 'cifar10' or 'cifar100'.
    data_dir: TFDS data directory, None for the TFDS default.
    validation_fraction: fraction of the train split held out (the last one), in [0, 1).
  """
  if name not in _SPECS:
    raise ValueError(f"Unknown CIFAR dataset {name!r}; choose one of: {', '.join(_SPECS)}")
  num_classes, mean, std = _SPECS[name]
  train, validation, test = tfds_source.load_tfds_splits(
      name, data_dir, validation_fraction, num_classes, IMAGE_SHAPE)
  info = DatasetInfo(
      name=name, num_classes=num_classes, image_shape=IMAGE_SHAPE, mean=mean, std=std,
      augmentation=AUGMENTATION)
  return Dataset(info=info, train=train, validation=validation, test=test)


def _load(name: str, data_config: ml_collections.ConfigDict) -> Dataset:
  if data_config.source not in SOURCES:
    raise ValueError(
        f"Unknown source {data_config.source!r} for dataset '{name}'; choose one of: "
        f"{', '.join(SOURCES)}")
  return load_cifar(name, data_config.tfds_data_dir, data_config.validation_fraction)


def load_cifar10(data_config: ml_collections.ConfigDict) -> Dataset:
  """CIFAR-10 as the data config asks (`source`, `tfds_data_dir`, `validation_fraction`)."""
  return _load('cifar10', data_config)


def load_cifar100(data_config: ml_collections.ConfigDict) -> Dataset:
  """CIFAR-100 as the data config asks (`source`, `tfds_data_dir`, `validation_fraction`)."""
  return _load('cifar100', data_config)
