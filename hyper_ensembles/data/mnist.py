"""MNIST and an MNIST-format stand-in, as out-of-distribution sets for Fashion-MNIST models.

This file owns where MNIST's test split comes from and how scikit-learn's digits are made to look
like MNIST. Neither is a training dataset here; data/ood.py names them `ood_mnist` and
`ood_digits28`.

- `mnist`: the 10 000 `t10k` images, read from the original IDX files in `config.data.mnist_dir`
  (default /usr/share/datasets/mnist, where a Debian `dataset-mnist` package would put them;
  gzipped or not) with Fashion-MNIST's IDX reader — the formats are identical. Without that
  directory the TFDS `mnist` test split is used, which downloads it when TFDS has not prepared it
  (a machine without network gives up after a few minutes of retries, then raises).
- `digits28`: the 1 797 embedded 8×8 scikit-learn digits upscaled bilinearly to 20×20 and padded
  to 28×28 — MNIST's own layout (digits fit a 20×20 box centred in 28×28). Handwritten digits like
  MNIST's, available offline everywhere, so a Fashion-MNIST-vs-digits OOD number can always be
  measured; it is a stand-in, not MNIST (coarser strokes: 17 grey levels at 8×8 before upscaling).
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging
from scipy import ndimage

from hyper_ensembles.data import digits, fashion_mnist, tfds_source
from hyper_ensembles.data.dataset import ArraySplit

DEFAULT_DIR = '/usr/share/datasets/mnist'
IMAGE_SHAPE = (28, 28, 1)
_DIGIT_BOX = 20  # MNIST's digits are size-normalised to 20×20 and centred in the 28×28 image.

_HOW_TO_FIX = (
    'Point --config.data.mnist_dir at a directory holding t10k-images-idx3-ubyte[.gz] and '
    't10k-labels-idx1-ubyte[.gz], or use the offline stand-in ood_datasets=digits28.')


def load_mnist_test(mnist_dir: str | None, tfds_data_dir: str | None = None) -> ArraySplit:
  """MNIST's test split: IDX files in `mnist_dir` if that directory exists, else TFDS `mnist`.

  Raises:
    FileNotFoundError: no `mnist_dir` and TFDS cannot provide `mnist` (or `mnist_dir` lacks a test
      file); the message names the places looked at and the offline stand-in.
  """
  mnist_dir = mnist_dir or DEFAULT_DIR
  if os.path.isdir(mnist_dir):
    return fashion_mnist.read_idx_split(mnist_dir, 'test', what='MNIST', how_to_fix=_HOW_TO_FIX)
  logging.warning('MNIST: no directory %s (config.data.mnist_dir); reading TFDS mnist instead '
                  '(downloads it if TFDS has not prepared it)', mnist_dir)
  try:
    return tfds_source.load_tfds_eval_split('mnist', 'test', tfds_data_dir)
  except Exception as e:  # Download and preparation failures have no common type in TFDS.
    raise FileNotFoundError(
        f'MNIST not found: no IDX directory {mnist_dir} and TFDS mnist failed '
        f'({type(e).__name__}: {e}). {_HOW_TO_FIX}') from e


def upscale_to_mnist(images: np.ndarray) -> np.ndarray:
  """uint8 `[N, h, w, 1]` digit images → uint8 `[N, 28, 28, 1]` in MNIST's 20×20-in-28×28 layout.

  Bilinear (scipy.ndimage.zoom, order 1), so values stay within the input's range.
  """
  n, h, w, c = images.shape
  if c != 1:
    raise ValueError(f'expected grey-scale images [N, h, w, 1], got {images.shape}')
  zoomed = ndimage.zoom(images[..., 0].astype(np.float64), (1, _DIGIT_BOX / h, _DIGIT_BOX / w),
                        order=1)
  pad = (IMAGE_SHAPE[0] - _DIGIT_BOX) // 2
  out = np.zeros((n, *IMAGE_SHAPE), np.uint8)
  out[:, pad:pad + _DIGIT_BOX, pad:pad + _DIGIT_BOX, 0] = np.round(zoomed).astype(np.uint8)
  return out


def load_digits28() -> ArraySplit:
  """All scikit-learn digits in MNIST's format (see the module docstring), with their labels."""
  everything = digits.load_all()
  return ArraySplit(upscale_to_mnist(everything.images), everything.labels)
