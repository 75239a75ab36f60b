"""On-device preprocessing: uint8 → normalised float, and train-time augmentation.

Batches travel host → device as uint8 (4× less traffic than float32); normalisation and
augmentation run inside the jitted steps, driven by the step's RNG, so they are deterministic
under resumption and cost no host CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hyper_ensembles.data.dataset import DatasetInfo

AUGMENTATIONS = ('none', 'crop_flip')


def normalize(images: jax.Array, info: DatasetInfo) -> jax.Array:
  """uint8 `[..., H, W, C]` → float32 with per-channel mean/std of the dataset."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(info.mean, jnp.float32)) / jnp.asarray(info.std, jnp.float32)


def crop_flip(rng: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
  """Pad `pad` pixels (zeros), random crop back to H×W, random horizontal flip; per image.

  Works on any leading axes `[..., H, W, C]`; every image gets its own crop offset and flip.
  """
  lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
  flat = images.reshape((-1, h, w, c))
  n = flat.shape[0]
  padded = jnp.pad(flat, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k_crop, k_flip = jax.random.split(rng)
  offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)
  crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
  out = jnp.where(flip, cropped[:, :, ::-1, :], cropped)
  return out.reshape((*lead, h, w, c))


def preprocess(images: jax.Array, info: DatasetInfo, rng: jax.Array | None = None) -> jax.Array:
  """Normalises, and augments when `rng` is given (train) and the dataset asks for it."""
  x = normalize(images, info)
  if rng is not None and info.augmentation == 'crop_flip':
    x = crop_flip(rng, x)
  elif info.augmentation not in AUGMENTATIONS:
    raise ValueError(
        f'Unknown augmentation {info.augmentation!r}; choose one of: {", ".join(AUGMENTATIONS)}')
  return x
