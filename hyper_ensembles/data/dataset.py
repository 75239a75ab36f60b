"""The in-memory dataset types every data source returns.

Every source (embedded digits, Fashion-MNIST IDX files, TFDS) is loaded into host memory as uint8
image arrays plus int32 labels. Keeping one representation is what lets `train.py` stay free of
source-specific branches, and what makes the train stream a pure function of (seed, step): exact
resumption needs no iterator state in the checkpoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """One split: images uint8 `[N, H, W, C]` (pixel values 0..255) and labels int32 `[N]`."""

  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise ValueError(
          f'images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}')
    if self.labels.shape != (self.images.shape[0],):
      raise ValueError(
          f'labels must be [N={self.images.shape[0]}], got shape {self.labels.shape}')

  def __len__(self) -> int:
    return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the training loop need to know about a dataset."""

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]  # (H, W, C)
  # Per-channel statistics on the [0, 1] pixel scale, used for normalisation on device.
  mean: tuple[float, ...]
  std: tuple[float, ...]
  # 'none' or 'crop_flip' (pad 4, random crop, horizontal flip; applied on device to train only).
  augmentation: str = 'none'


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train / validation / test splits plus any extra evaluation sets (shifted, OOD) by name."""

  info: DatasetInfo
  train: ArraySplit
  validation: ArraySplit
  test: ArraySplit
  extra_eval: dict[str, ArraySplit] = dataclasses.field(default_factory=dict)

  @property
  def num_train(self) -> int:
    return len(self.train)

  @classmethod
  def with_train_statistics(cls, name: str, num_classes: int, image_shape: tuple[int, int, int],
                            train: ArraySplit, validation: ArraySplit, test: ArraySplit
                            ) -> Dataset:
    """A dataset without augmentation, normalised by its own train split's channel statistics."""
    mean, std = channel_stats(train.images)
    info = DatasetInfo(name=name, num_classes=num_classes, image_shape=image_shape, mean=mean,
                       std=std, augmentation='none')
    return cls(info=info, train=train, validation=validation, test=test)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and (population) std of uint8 images `[N, H, W, C]`, on the [0, 1] scale.

  Computed exactly from a 256-bin histogram per channel: no float copy of the images is made
  (a float64 copy of Fashion-MNIST's train split alone would be ~360 MB).
  """
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'expected uint8 [N, H, W, C] images, got {images.dtype} {images.shape}')
  if images.shape[0] == 0:
    raise ValueError('cannot compute channel statistics of an empty split')
  values = np.arange(256, dtype=np.float64) / 255.0
  means, stds = [], []
  for c in range(images.shape[-1]):
    counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
    total = counts.sum()
    mean = float(counts @ values / total)
    var = float(counts @ (values - mean) ** 2 / total)
    means.append(mean)
    stds.append(var**0.5)
  return tuple(means), tuple(stds)
