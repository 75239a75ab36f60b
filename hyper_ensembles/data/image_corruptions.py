"""Seeded image corruptions (numpy / scipy) for the shifted test sets of digits and Fashion-MNIST.

This file owns the corruption functions and their severity table. Every function maps float images
`[N, H, W, C]` in [0, 1] to images of the same shape and dtype, clipped to [0, 1]; all randomness
comes from the `np.random.Generator` passed in, so a corrupted set is a pure function of
(images, type, severity, seed) — see `corrupt`. data/corrupted.py turns them into the evaluation
sets `corrupt_<type>_<severity>`.

Severities follow MNIST-C (Mu & Gilmer 2019, google-research/mnist-c, itself built on the
ImageNet-C / CIFAR-C code of Hendrycks & Dietterich 2019), whose parameters were set for 28×28
images; the names are theirs. Lengths given in pixels there are given here as fractions of the
image side (`px/28`), so an 8×8 digit is shifted by the same fraction of its width as a 28×28
Fashion-MNIST image.

| type           | parameter, severity 1..5                   | what it does                      |
|----------------|--------------------------------------------|-----------------------------------|
| gaussian_noise | σ = .08, .12, .18, .26, .38                | x + N(0, σ²) per pixel            |
| shot_noise     | λ = 60, 25, 12, 5, 3                       | Poisson(λ·x) / λ                  |
| impulse_noise  | p = .03, .06, .09, .17, .27                | salt & pepper: p/2 → 1, p/2 → 0   |
| gaussian_blur  | σ = .5, .75, 1, 1.5, 2 pixels              | Gaussian filter over H, W         |
| contrast       | c = .4, .3, .2, .1, .05                    | (x − mean) · c + mean, per image  |
| brightness     | δ = .1, .2, .3, .4, .5                     | x + δ (HSV value of a grey image) |
| rotate         | θ = ±.2, .4, .6, .8, 1 rad (11°–57°)       | rotation about the centre         |
| translate      | d = ±1, 2, 3, 4, 5 px/28 on each axis      | shift, zero fill                  |
| shear          | k = ±.2, .4, .6, .8, 1                     | horizontal shear about the centre |
| scale          | s = .9, .8, .7, .6, .5                     | zoom out about the centre         |

± : a random sign per image (per axis for translate).

Departures from MNIST-C, and why: blur σ is in pixels of the image at hand, not scaled by the
side (scaled, severity 1 would be ~0.3 px on 8×8 digits: almost no change after rounding to uint8),
and gentler than MNIST-C's 1–6 px (a blur it keeps off its benchmark list; CIFAR-C uses 0.4–1 px at
32 px);
geometric transforms interpolate bilinearly (scipy.ndimage, `order=1`) with zero fill, the
background of both datasets; `rotate` uses scipy.ndimage.rotate's sign convention. Each random
draw (noise, signs) is per image. The mean absolute change of an image grows with the severity for
every type (tested).

`MNIST_C_TYPES` are the types of MNIST-C's benchmark list that exist here ('official' in
`config.data.corruptions`); `TYPES` all of them ('all').
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)
_REFERENCE_SIDE = 28  # MNIST-C's pixel lengths are for 28×28 images.


def _check(images: np.ndarray) -> np.ndarray:
  if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'expected float images [N, H, W, C] in [0, 1], got {images.dtype} '
                     f'{images.shape}')
  return images


def _finish(out: np.ndarray, like: np.ndarray) -> np.ndarray:
  return np.clip(out, 0.0, 1.0).astype(like.dtype, copy=False)


def _signs(rng: np.random.Generator, shape) -> np.ndarray:
  return rng.choice(np.array([-1.0, 1.0]), size=shape)


# --- pixel-wise corruptions ----------------------------------------------------------------------


def gaussian_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """Additive Gaussian noise of standard deviation `sigma`, per pixel."""
  return _finish(images + rng.normal(0.0, sigma, images.shape), images)


def shot_noise(images: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
  """Poisson (photon-count) noise: Poisson(rate · x) / rate; fewer photons = more noise."""
  return _finish(rng.poisson(np.clip(images, 0.0, 1.0) * rate) / rate, images)


def impulse_noise(images: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
  """Salt and pepper: a fraction `amount` of the pixels, half set to 1, half to 0."""
  u = rng.random(images.shape)
  return _finish(np.where(u < amount / 2, 1.0, np.where(u < amount, 0.0, images)), images)


def gaussian_blur(images: np.ndarray, sigma: float, rng: np.random.Generator | None = None
                  ) -> np.ndarray:
  """Gaussian filter of `sigma` pixels over height and width (edges reflected, scipy's default)."""
  del rng  # Deterministic; the argument keeps every corruption's signature the same.
  return _finish(ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0)), images)


def contrast(images: np.ndarray, factor: float, rng: np.random.Generator | None = None
             ) -> np.ndarray:
  """Pulls each image towards its own mean (per channel): (x − mean) · factor + mean."""
  del rng
  mean = images.mean(axis=(1, 2), keepdims=True)
  return _finish((images - mean) * factor + mean, images)


def brightness(images: np.ndarray, delta: float, rng: np.random.Generator | None = None
               ) -> np.ndarray:
  """Adds `delta`: MNIST-C's HSV value shift, which for grey images is x + delta."""
  del rng
  return _finish(images + delta, images)


# --- geometric corruptions -----------------------------------------------------------------------


def affine_warp(images: np.ndarray, matrices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """Per-image affine warp about the image centre, bilinear, zero outside the image.

  The output pixel at (row, col) = p reads the input at `matrices[n] @ (p − c) + c + offsets[n]`,
  c = ((H − 1) / 2, (W − 1) / 2) — scipy.ndimage.affine_transform's convention, so a rotation
  matrix reproduces scipy.ndimage.rotate(..., reshape=False, order=1).

  Args:
    images: float `[N, H, W, C]`.
    matrices: `[N, 2, 2]`, acting on (row, col).
    offsets: `[N, 2]`, (row, col).
  """
  _, h, w, c = images.shape
  centre = np.array([(h - 1) / 2, (w - 1) / 2])
  out = np.empty_like(images)
  # One 2-D affine_transform per image and channel: one map_coordinates call over the whole stack
  # also interpolates along the image axis and measured ~5× slower.
  for n, (matrix, offset) in enumerate(zip(matrices, offsets)):
    for channel in range(c):
      ndimage.affine_transform(images[n, ..., channel], matrix, centre + offset - matrix @ centre,
                               order=1, mode='constant', cval=0.0, output=out[n, ..., channel])
  return out


def rotation_matrices(angles_degrees: np.ndarray) -> np.ndarray:
  """`[N, 2, 2]` matrices for which `affine_warp` equals scipy.ndimage.rotate by each angle."""
  theta = np.deg2rad(np.asarray(angles_degrees, np.float64))
  cos, sin = np.cos(theta), np.sin(theta)
  return np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)


def rotate_by(images: np.ndarray, angles_degrees: np.ndarray) -> np.ndarray:
  """Rotates image n by `angles_degrees[n]` about its centre (scipy.ndimage.rotate's sense)."""
  matrices = rotation_matrices(angles_degrees)
  return _finish(affine_warp(images, matrices, np.zeros((len(images), 2))), images)


def translate_by(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
  """Moves image n's content by `shifts[n]` = (rows, cols) pixels (down / right if positive)."""
  shifts = np.asarray(shifts, np.float64)
  matrices = np.broadcast_to(np.eye(2), (len(images), 2, 2))
  return _finish(affine_warp(images, matrices, -shifts), images)


def rotate(images: np.ndarray, radians: float, rng: np.random.Generator) -> np.ndarray:
  """Rotation by ±`radians`, the sign drawn per image."""
  return rotate_by(images, np.rad2deg(radians) * _signs(rng, len(images)))


def translate(images: np.ndarray, pixels_at_28: float, rng: np.random.Generator) -> np.ndarray:
  """Shift by ±d rows and ±d columns (signs per image), d = pixels_at_28 · side / 28."""
  side = np.array(images.shape[1:3], np.float64)
  return translate_by(images, pixels_at_28 / _REFERENCE_SIDE * side * _signs(rng, (len(images), 2)))


def shear(images: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
  """Horizontal shear by ±`factor` (sign per image): col_in = col + k · (row − centre)."""
  k = factor * _signs(rng, len(images))
  matrices = np.zeros((len(images), 2, 2))
  matrices[:, 0, 0] = matrices[:, 1, 1] = 1.0
  matrices[:, 1, 0] = k
  return _finish(affine_warp(images, matrices, np.zeros((len(images), 2))), images)


def scale(images: np.ndarray, factor: float, rng: np.random.Generator | None = None
          ) -> np.ndarray:
  """Zooms the content by `factor` (< 1 shrinks it) about the centre."""
  del rng
  matrices = np.broadcast_to(np.eye(2) / factor, (len(images), 2, 2))
  return _finish(affine_warp(images, matrices, np.zeros((len(images), 2))), images)


# --- the table -------------------------------------------------------------------------------

Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]

# type → (function, parameter per severity 1..5); the module docstring's table.
CORRUPTIONS: dict[str, tuple[Corruption, tuple[float, ...]]] = {
    'gaussian_noise': (gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38)),
    'shot_noise': (shot_noise, (60.0, 25.0, 12.0, 5.0, 3.0)),
    'impulse_noise': (impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27)),
    'gaussian_blur': (gaussian_blur, (0.5, 0.75, 1.0, 1.5, 2.0)),
    'contrast': (contrast, (0.4, 0.3, 0.2, 0.1, 0.05)),
    'brightness': (brightness, (0.1, 0.2, 0.3, 0.4, 0.5)),
    'rotate': (rotate, (0.2, 0.4, 0.6, 0.8, 1.0)),
    'translate': (translate, (1.0, 2.0, 3.0, 4.0, 5.0)),
    'shear': (shear, (0.2, 0.4, 0.6, 0.8, 1.0)),
    'scale': (scale, (0.9, 0.8, 0.7, 0.6, 0.5)),
}
TYPES = tuple(CORRUPTIONS)
# MNIST-C's benchmark corruptions (its CORRUPTIONS list) that are implemented here.
MNIST_C_TYPES = ('shot_noise', 'impulse_noise', 'shear', 'scale', 'rotate', 'brightness',
                 'translate')


def rng_for(seed: int, *key: str | int) -> np.random.Generator:
  """A generator seeded by `seed` and a key of names / integers, stable across runs and Pythons.

  Names enter through CRC-32 (not `hash`, which is salted per process), so each (type, severity)
  or synthetic set has its own stream whatever else a run asks for.
  """
  words = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key]
  return np.random.default_rng(words)


def corrupt(images: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
  """Corrupts float images `[N, H, W, C]` in [0, 1]; same shape and dtype, in [0, 1].

  The result is a pure function of the arguments: the random stream is `rng_for(seed, corruption,
  severity)`.
  """
  if corruption not in CORRUPTIONS:
    raise ValueError(f'Unknown corruption {corruption!r}; choose from: {", ".join(TYPES)}')
  if severity not in SEVERITIES:
    raise ValueError(f'Corruption severity must be one of {SEVERITIES}, got {severity!r}')
  fn, parameters = CORRUPTIONS[corruption]
  return fn(_check(images), parameters[severity - 1], rng_for(seed, corruption, severity))


def corrupt_uint8(images: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
  """`corrupt` for the datasets' uint8 images: /255, corrupt, round back to uint8 0..255.

  The result is stored like any clean split, so it is normalised on device exactly as the clean
  test images are (data/preprocess.py).
  """
  if images.dtype != np.uint8:
    raise ValueError(f'expected uint8 images, got {images.dtype}')
  out = corrupt(images.astype(np.float32) / 255.0, corruption, severity, seed)
  return np.round(out * 255.0).astype(np.uint8)
