"""Fashion-MNIST: a reader for the original IDX files, and the TFDS alternative.

This file owns the IDX format (magic numbers, big-endian dimensions, size checks) and the
Fashion-MNIST protocol: validation is the last `validation_fraction` of the 60 000 training images
(unshuffled), train the rest, test the 10 000 `t10k` images. With the default fraction 0.05 that
is 57 000 / 3 000 / 10 000. Normalisation statistics come from the train split.

Source 'idx' (the default) reads the files Debian's `dataset-fashion-mnist` package installs in
/usr/share/datasets/fashion-mnist, gzipped or not, with numpy only; source 'tfds' goes through
TensorFlow Datasets and gives the same split sizes.
"""

from __future__ import annotations

import gzip
import os
import zlib

import ml_collections
import numpy as np

from hyper_ensembles.data import tfds_source
from hyper_ensembles.data.dataset import ArraySplit, Dataset

NAME = 'fashion_mnist'
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
SOURCES = ('default', 'idx', 'tfds')

# IDX magic numbers: two zero bytes, type code 0x08 (unsigned byte), number of dimensions.
IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions [N, rows, cols].
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension [N].

_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}

_HOW_TO_FIX = (
    'Install the files with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), point '
    '--config.data.fashion_mnist_dir at a directory holding the four IDX files, or use '
    '--config.data.source=tfds.')


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads an IDX file of unsigned bytes (gzipped if `path` ends in '.gz').

  Args:
    path: the file.
    expected_magic: IMAGES_MAGIC or LABELS_MAGIC; anything else in the header is an error, which
      catches swapped image / label files as well as corrupt ones.

  Returns:
    A uint8 array with the dimensions the header declares.

  Raises:
    ValueError: the file is not a valid gzip file, has the wrong magic number, or its size does not
      match the declared dimensions.
  """
  if path.endswith('.gz'):
    try:
      with gzip.open(path, 'rb') as f:
        raw = f.read()
    # Only decompression failures; I/O errors (missing file, permissions) propagate unchanged.
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
      raise ValueError(
          f'{path}: cannot decompress ({e}); the file is corrupt or truncated') from e
  else:
    with open(path, 'rb') as f:
      raw = f.read()

  if len(raw) < 4:
    raise ValueError(f'{path}: only {len(raw)} bytes, too short for an IDX header')
  magic = int.from_bytes(raw[:4], 'big')
  if magic != expected_magic:
    raise ValueError(
        f'{path}: IDX magic number {magic}, expected {expected_magic}; not an IDX '
        f'{"image" if expected_magic == IMAGES_MAGIC else "label"} file, or corrupt')
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f'{path}: truncated IDX header ({len(raw)} bytes, need {header})')
  dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  expected_size = header + int(np.prod(dims))
  if len(raw) != expected_size:
    raise ValueError(
        f'{path}: {len(raw)} bytes, but the header declares dimensions {dims} '
        f'({expected_size} bytes); the file is corrupt or truncated')
  # Copied so the array is writable and owns its memory, like every other source's arrays.
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find_file(directory: str, stem: str, what: str, how_to_fix: str) -> str:
  """Returns `directory/stem.gz` if it exists, else `directory/stem`, else raises."""
  candidates = [os.path.join(directory, stem + '.gz'), os.path.join(directory, stem)]
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f'{what} file not found: looked for {candidates[0]} and {candidates[1]}. ' + how_to_fix)


def read_idx_split(directory: str, split: str, what: str = 'Fashion-MNIST',
                   how_to_fix: str = _HOW_TO_FIX) -> ArraySplit:
  """Reads the 'train' or 'test' split from IDX files in `directory`.

  MNIST's files have the same names and format as Fashion-MNIST's (data/mnist.py reads them here);
  `what` and `how_to_fix` word the error when a file is missing.
  """
  image_stem, label_stem = _FILES[split]
  image_path = _find_file(directory, image_stem, what, how_to_fix)
  label_path = _find_file(directory, label_stem, what, how_to_fix)
  images = read_idx(image_path, IMAGES_MAGIC)
  labels = read_idx(label_path, LABELS_MAGIC)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f'{image_path} holds {images.shape[0]} images but {label_path} holds '
        f'{labels.shape[0]} labels')
  if labels.size and labels.max() >= NUM_CLASSES:
    raise ValueError(f'{label_path}: label {labels.max()} out of range 0..{NUM_CLASSES - 1}')
  return ArraySplit(images[..., None], labels.astype(np.int32))


def load_fashion_mnist_idx(directory: str, validation_fraction: float) -> Dataset:
  """Fashion-MNIST from the original IDX files in `directory` (gzipped or plain).

  Raises:
    FileNotFoundError: `directory` or one of the four files is missing; the message names the path
      and how to fix it.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f'Fashion-MNIST directory not found: {directory}. ' + _HOW_TO_FIX)
  full_train = read_idx_split(directory, 'train')
  test = read_idx_split(directory, 'test')
  train, validation = tfds_source.holdout_tail(full_train, validation_fraction)
  return Dataset.with_train_statistics(NAME, NUM_CLASSES, IMAGE_SHAPE, train, validation, test)


def load_fashion_mnist_tfds(data_dir: str | None, validation_fraction: float) -> Dataset:
  """Fashion-MNIST through TFDS ('fashion_mnist'), with the same protocol as the IDX source."""
  train, validation, test = tfds_source.load_tfds_splits(
      NAME, data_dir, validation_fraction, NUM_CLASSES, IMAGE_SHAPE)
  return Dataset.with_train_statistics(NAME, NUM_CLASSES, IMAGE_SHAPE, train, validation, test)




def load(data_config: ml_collections.ConfigDict) -> Dataset:
  """Fashion-MNIST as the data config asks.

  Uses `source`, `fashion_mnist_dir`, `tfds_data_dir` and `validation_fraction` (see `registry`).
  """
  source = data_config.source
  if source in ('default', 'idx'):
    return load_fashion_mnist_idx(data_config.fashion_mnist_dir, data_config.validation_fraction)
  if source == 'tfds':
    return load_fashion_mnist_tfds(data_config.tfds_data_dir, data_config.validation_fraction)
  raise ValueError(
      f"Unknown source {source!r} for dataset '{NAME}'; choose one of: {', '.join(SOURCES)}")
