"""TFDS into host memory, plus the split and statistics helpers every source shares.

This file owns the only code that talks to TensorFlow Datasets: a whole split is read once into
numpy (uint8 images, int32 labels) so that the rest of the pipeline never sees `tf.data`. It also
owns the two rules every source must apply identically, whichever way its bytes arrive:

- `holdout_tail`: validation is the *last* `validation_fraction` of the training split, unshuffled
  (the official protocol: the last 5 % of the TFDS train split), with one rounding rule.

TensorFlow and TFDS are imported inside functions: importing them costs seconds, and runs on the
embedded digits dataset must not pay it.
"""

from __future__ import annotations

import numpy as np

from hyper_ensembles.data.dataset import ArraySplit

# Examples per batch when streaming a split into numpy. Large enough to be fast, small enough that
# no single tensor is huge; the batches are concatenated on the host.
_READ_BATCH_SIZE = 4096


def holdout_tail(split: ArraySplit, validation_fraction: float) -> tuple[ArraySplit, ArraySplit]:
  """Splits off the last `validation_fraction` of `split` as validation (no shuffling).

  Args:
    split: the full training split.
    validation_fraction: in [0, 1); the validation size is `round(N * validation_fraction)`, so
      0.05 of 50 000 CIFAR images gives 2 500 and of 60 000 Fashion-MNIST images gives 3 000.

  Returns:
    (train, validation): train the first N - n_val examples, validation the last n_val.
  """
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(f'validation_fraction must be in [0, 1), got {validation_fraction!r}')
  n = len(split)
  n_val = round(n * validation_fraction)
  n_train = n - n_val
  train = ArraySplit(split.images[:n_train], split.labels[:n_train])
  validation = ArraySplit(split.images[n_train:], split.labels[n_train:])
  return train, validation




def _read_split(name: str, split: str, data_dir: str | None):
  """Reads one TFDS split into (images uint8 [N,H,W,C], labels int32 [N], tfds.core.DatasetInfo)."""
  import tensorflow_datasets as tfds  # Lazy: see the module docstring.

  # Batches of a fixed size rather than `batch_size=-1`: the latter batches by the metadata's total
  # example count, which is missing under `tfds.testing.mock_data` (TF then aborts on a batch of
  # sys.maxsize), and it would hold every split of the dataset in one tensor.
  ds, info = tfds.load(
      name, split=split, batch_size=_READ_BATCH_SIZE, as_supervised=True, data_dir=data_dir,
      with_info=True, shuffle_files=False)
  images, labels = [], []
  for image_batch, label_batch in tfds.as_numpy(ds):
    images.append(image_batch)
    labels.append(label_batch)
  if not images:
    raise ValueError(f'TFDS split {name}:{split} is empty')
  images = np.concatenate(images)
  labels = np.concatenate(labels)
  if images.dtype != np.uint8:
    raise ValueError(f'TFDS {name}:{split} images are {images.dtype}, expected uint8')
  if images.ndim == 3:  # Grey-scale datasets without a channel axis.
    images = images[..., None]
  return images, labels.astype(np.int32), info


def _num_classes(info) -> int:
  """Number of classes of the supervised label feature of a TFDS dataset."""
  label_key = info.supervised_keys[1]
  return int(info.features[label_key].num_classes)


def load_tfds_splits(
    name: str, data_dir: str | None, validation_fraction: float, num_classes: int,
    image_shape: tuple[int, int, int]) -> tuple[ArraySplit, ArraySplit, ArraySplit]:
  """Loads a TFDS image-classification dataset with the train / validation / test protocol.

  The TFDS `train` split is read whole and its last `validation_fraction` held out (see
  `holdout_tail`) rather than using `train[:95%]` / `train[95%:]` slicing: one rounding rule for
  every source and every fraction, and the split is read once instead of twice.

  Args:
    name: TFDS name, optionally with config and version (e.g. 'cifar10', 'fashion_mnist').
    data_dir: TFDS data directory; None for the TFDS default (`~/tensorflow_datasets` or
      `$TFDS_DATA_DIR`).
    validation_fraction: fraction of the train split held out as validation, in [0, 1).
    num_classes: classes the caller expects; anything else is an error naming both.
    image_shape: (H, W, C) the caller expects, likewise.

  Returns:
    (train, validation, test).
  """
  images, labels, info = _read_split(name, 'train', data_dir)
  train, validation = holdout_tail(ArraySplit(images, labels), validation_fraction)
  test_images, test_labels, _ = _read_split(name, 'test', data_dir)
  test = ArraySplit(test_images, test_labels)
  got_shape, got_classes = tuple(int(d) for d in images.shape[1:]), _num_classes(info)
  if got_classes != num_classes or got_shape != tuple(image_shape):
    raise ValueError(
        f'TFDS {name}: expected {num_classes} classes of {tuple(image_shape)} images, got '
        f'{got_classes} of {got_shape}')
  return train, validation, test


def load_tfds_eval_split(name: str, split: str = 'test', data_dir: str | None = None) -> ArraySplit:
  """Loads one extra evaluation split (shifted or OOD data), e.g. 'cifar10_corrupted/fog_3'.

  Callers check that the image shape (and, for shifted data, the label set) matches the training
  dataset; OOD sets keep their own labels, which only the in/out membership uses.
  """
  images, labels, _ = _read_split(name, split, data_dir)
  return ArraySplit(images, labels)
