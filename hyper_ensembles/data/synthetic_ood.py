"""Synthetic out-of-distribution images, generated from a seed for any image shape.

This file owns the synthetic OOD sets (data/ood.py names them `ood_<name>`). They need no files, so
every dataset — the embedded digits in particular, which has no natural OOD partner here — gets an
OOD number. Each set is uint8 `[N, H, W, C]` with labels 0 (meaningless: OOD sets are only scored
against the test set) and is a pure function of (name, N, shape, seed):

- `uniform_noise`: every pixel uniform on 0..255, independently.
- `blobs`: smooth random patterns: Gaussian white noise low-pass filtered with σ = side / 8 pixels,
  each image min–max stretched to 0..255 (structure without semantics; in the spirit of the
  "blobs" of Hendrycks et al., Outlier Exposure, 2019).
- `constant`: every image one random grey level (per channel), uniform on 0..255.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from hyper_ensembles.data.dataset import ArraySplit
from hyper_ensembles.data.image_corruptions import rng_for


def uniform_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  return rng.integers(0, 256, size=shape, dtype=np.uint8)


def blobs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  _, h, w, _ = shape
  smooth = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0, h / 8, w / 8, 0))
  low = smooth.min(axis=(1, 2, 3), keepdims=True)
  high = smooth.max(axis=(1, 2, 3), keepdims=True)
  return np.round(255.0 * (smooth - low) / np.maximum(high - low, 1e-12)).astype(np.uint8)


def constant(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  n, *_, c = shape
  levels = rng.integers(0, 256, size=(n, 1, 1, c), dtype=np.uint8)
  return np.broadcast_to(levels, shape).copy()


GENERATORS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    'uniform_noise': uniform_noise,
    'blobs': blobs,
    'constant': constant,
}
NAMES = tuple(GENERATORS)


def generate(name: str, num_examples: int, image_shape: tuple[int, int, int], seed: int = 0
             ) -> ArraySplit:
  """`num_examples` synthetic images of `image_shape` (H, W, C); see the module docstring."""
  if name not in GENERATORS:
    raise ValueError(f'Unknown synthetic OOD set {name!r}; choose from: {", ".join(NAMES)}')
  if num_examples < 1:
    raise ValueError(f'num_examples must be positive, got {num_examples}')
  images = GENERATORS[name](rng_for(seed, 'ood', name), (num_examples, *image_shape))
  return ArraySplit(images, np.zeros(num_examples, np.int32))
