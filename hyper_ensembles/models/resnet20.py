"""ResNet-20 (He et al. 2016, CIFAR variant), in any layer form, with the official L2 groups.

This file owns the ResNet-20 architecture and the hyperparameter names shared by both ResNets:

  conv 3×3, 16 → BN → ReLU → 3 stages × 3 basic blocks (16 / 32 / 64 filters; the first block of
  stages 2 and 3 has stride 2) → global average pool → dense logits.

Basic block (post-activation, the original ordering): conv → BN → ReLU → conv → BN, plus the
shortcut, then ReLU. Shortcuts are parameter-free ("option A" of the paper's CIFAR experiments):
identity, or, where the shape changes, a stride-2 subsample zero-padded to the new channel count.
So ResNet-20 has the 0.27 M parameters He et al. report: 269 722 trainable for 10 classes (272 474
as Keras counts, with BatchNorm's running statistics).

Note: the hyper-ensemble paper's "ResNet-20" notebook is a width-1 Wide ResNet of depth 22; we use
the standard ResNet-20 of He et al. and say so in configs/resnet20.py (docs/design.md §6).

Every conv is built by the kit (plain / batch-ensemble / hyper-batch form) without a bias, as BN
follows it. BatchNorm (normalization.py) is shared by all members: with `[M, B, ...]` inputs its
training statistics are over every member's rows, as in the official code; under the deep-ensemble
`vmap` each member has its own.

L2 groups (hyperparameter names, the official code's six tuned ones plus the fixed BN one):
`l2_input_conv` (first conv), `l2_group_1..3` (every conv of stage 1..3), `l2_dense_kernel`,
`l2_dense_bias`, `l2_bn` (γ and β of every BatchNorm).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit
from hyper_ensembles.models.normalization import BatchNorm

# The six L2 groups the hyper-batch ensemble tunes (official WRN code) and the fixed BN group.
TUNED_L2 = ('l2_input_conv', 'l2_group_1', 'l2_group_2', 'l2_group_3', 'l2_dense_kernel',
            'l2_dense_bias')
BN_L2 = 'l2_bn'
HPARAMS = (*TUNED_L2, BN_L2)


def group_l2(stage: int) -> str:
  """L2 hyperparameter of every conv in stage (group) `stage`, counted from 1."""
  return f'l2_group_{stage}'


def pad_shortcut(x: jax.Array, features: int, stride: int) -> jax.Array:
  """Parameter-free shortcut: subsample by `stride`, zero-pad channels evenly up to `features`.

  Works on any leading axes `[..., H, W, C]`, so the member axis of ensemble forms passes through.
  """
  if stride > 1:
    x = x[..., ::stride, ::stride, :]
  extra = features - x.shape[-1]
  if extra < 0:
    raise ValueError(f'shortcut cannot reduce channels from {x.shape[-1]} to {features}')
  pad = [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)]
  return jnp.pad(x, pad)


def global_average_pool(x: jax.Array) -> jax.Array:
  """`[..., H, W, C]` → `[..., C]`."""
  return jnp.mean(x, axis=(-3, -2))


class BasicBlock(nn.Module):
  """conv → BN → ReLU → conv → BN, + shortcut, → ReLU (He et al. 2016, original ordering)."""

  kit: LayerKit
  features: int
  stride: int
  l2: str

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool) -> jax.Array:
    conv = lambda strides, name: self.kit.conv(
        self.features, (3, 3), strides=(strides, strides), kernel_l2=self.l2, use_bias=False,
        name=name)
    y = conv(self.stride, 'conv_0')(x, cond)
    y = nn.relu(BatchNorm(l2=BN_L2, name='bn_0')(y, cond, train))
    y = conv(1, 'conv_1')(y, cond)
    y = BatchNorm(l2=BN_L2, name='bn_1')(y, cond, train)
    if x.shape[-1] != self.features or self.stride != 1:
      x = pad_shortcut(x, self.features, self.stride)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """CIFAR ResNet of He et al. 2016; the defaults give ResNet-20 (depth 6·blocks + 2).

  Input `[B, H, W, C]` (plain form) or `[M, B, H, W, C]` (ensemble forms); output logits with the
  same leading axes.

  Attributes:
    kit: the layer form to build.
    num_classes: output classes.
    widths: filters of the three stages; the input conv has `widths[0]`.
    blocks_per_stage: basic blocks per stage (3 for ResNet-20).
  """

  kit: LayerKit
  num_classes: int
  widths: tuple[int, int, int] = (16, 32, 64)
  blocks_per_stage: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool = False) -> jax.Array:
    x = self.kit.conv(self.widths[0], (3, 3), kernel_l2='l2_input_conv', use_bias=False,
                      name='input_conv')(x, cond)
    x = nn.relu(BatchNorm(l2=BN_L2, name='input_bn')(x, cond, train))
    for stage, features in enumerate(self.widths, start=1):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 1 and block == 0 else 1
        x = BasicBlock(self.kit, features, stride, group_l2(stage),
                       name=f'group_{stage}_block_{block}')(x, cond, train)
    x = global_average_pool(x)
    return self.kit.dense(self.num_classes, kernel_l2='l2_dense_kernel', bias_l2='l2_dense_bias',
                          name='logits')(x, cond)
