"""The embedded dataset: scikit-learn's 8×8 handwritten digits (1 797 images, no download).

This file owns the conversion of the digits to the common uint8 representation and their fixed,
seeded split. It is the default dataset because it needs neither files nor network, so every
method and test can run anywhere in seconds.

Pixel scaling: the raw values are integers 0..16; value v becomes round(255 · v / 16), so 0 → 0 and
16 → 255 (the [0, 1] scale the model sees is v / 16 to within 0.002) and the 17 grey levels stay
distinct (0, 16, 32, ..., 239, 255).

Split: stratified by class and seeded by `split_seed`. Per class, in a seeded random order:
`TEST_FRACTION` (20 %) of the images go to test, then a fraction of the rest to validation, and the
remainder to train. The validation fraction is `max(validation_fraction, MIN_VALIDATION_FRACTION)`
(0.15): the 5 % used for CIFAR would leave only ~70 digits, too few for hyperparameter tuning and
greedy ensemble selection to mean anything. `validation_fraction = 0` is honoured (no validation
split), for retraining on train + validation. With the default fraction the sizes are 1 222 train /
216 validation / 359 test for every seed (stratification fixes the per-class counts).
"""

from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging

from hyper_ensembles.data.dataset import ArraySplit, Dataset

NAME = 'digits'
NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
SOURCES = ('default',)
TEST_FRACTION = 0.2
MIN_VALIDATION_FRACTION = 0.15
_RAW_MAX = 16  # load_digits pixel values are integers 0..16.


def to_uint8(raw: np.ndarray) -> np.ndarray:
  """Maps digit pixel values 0..16 to uint8 round(255 · v / 16), keeping all 17 levels distinct."""
  raw = np.asarray(raw)
  if raw.min() < 0 or raw.max() > _RAW_MAX or not np.all(raw == np.round(raw)):
    raise ValueError(f'digits pixels must be integers in 0..{_RAW_MAX}')
  return np.round(raw.astype(np.float64) * (255.0 / _RAW_MAX)).astype(np.uint8)


def effective_validation_fraction(validation_fraction: float) -> float:
  """The validation fraction digits actually uses (see the module docstring)."""
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(f'validation_fraction must be in [0, 1), got {validation_fraction!r}')
  if validation_fraction == 0.0:
    return 0.0
  return max(validation_fraction, MIN_VALIDATION_FRACTION)


def split_indices(
    labels: np.ndarray, validation_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Stratified, seeded (train, validation, test) indices, each sorted ascending.

  `validation_fraction` is used as given (the caller applies `effective_validation_fraction`);
  it is a fraction of what remains after the test images are taken.
  """
  order = np.random.default_rng(split_seed).permutation(labels.shape[0])
  train, validation, test = [], [], []
  for c in np.unique(labels):
    members = order[labels[order] == c]  # Class c in the seeded random order.
    n_test = round(members.size * TEST_FRACTION)
    n_val = round((members.size - n_test) * validation_fraction)
    test.append(members[:n_test])
    validation.append(members[n_test:n_test + n_val])
    train.append(members[n_test + n_val:])
  # Sorted so that each split lists images in the dataset's own order: the split is then a pure
  # function of (seed, fraction), independent of how the per-class pieces were gathered.
  return tuple(np.sort(np.concatenate(parts)) for parts in (train, validation, test))


def load_all() -> ArraySplit:
  """All 1 797 digits in scikit-learn's order: uint8 [N, 8, 8, 1] images, int32 labels."""
  from sklearn import datasets as sk_datasets  # Lazy: keeps `import registry` cheap.

  raw = sk_datasets.load_digits()
  return ArraySplit(to_uint8(raw.images)[..., None], raw.target.astype(np.int32))


def load_digits_dataset(validation_fraction: float = 0.05, split_seed: int = 0) -> Dataset:
  """The digits dataset: uint8 [N, 8, 8, 1] images, int32 labels, stats from the train split."""
  everything = load_all()
  images, labels = everything.images, everything.labels

  fraction = effective_validation_fraction(validation_fraction)
  if fraction != validation_fraction:
    logging.info(
        'digits: validation_fraction %s raised to %s (too few images otherwise)',
        validation_fraction, fraction)
  train_idx, val_idx, test_idx = split_indices(labels, fraction, split_seed)
  train = ArraySplit(images[train_idx], labels[train_idx])
  validation = ArraySplit(images[val_idx], labels[val_idx])
  test = ArraySplit(images[test_idx], labels[test_idx])

  return Dataset.with_train_statistics(NAME, NUM_CLASSES, IMAGE_SHAPE, train, validation, test)


def load(data_config: ml_collections.ConfigDict) -> Dataset:
  """Digits as the data config asks.

  Uses `source` (only 'default'), `validation_fraction` and `split_seed` (see `registry`).
  """
  if data_config.source != 'default':
    raise ValueError(
        f"Unknown source {data_config.source!r} for dataset '{NAME}'; choose one of: "
        f"{', '.join(SOURCES)}")
  return load_digits_dataset(data_config.validation_fraction, data_config.split_seed)
