"""Wide ResNet-28-10 (Zagoruyko & Komodakis 2016), pre-activation, in any layer form.

This file owns the Wide ResNet as the official hyper-batch / batch-ensemble code builds it
(uncertainty-baselines `wide_resnet_hyperbatchensemble.py`, version 2):

  conv 3×3, 16 → 3 groups of (depth − 4)/6 pre-activation blocks, widths 16k / 32k / 64k
  (160 / 320 / 640 for k = 10; the first block of groups 2 and 3 has stride 2)
  → BN → ReLU → global average pool → dense logits.

Block: y = conv(ReLU(BN(conv(ReLU(BN(x)))))); where the shape changes the shortcut is a 1×1 conv
(with the block's stride) of the block's *raw* input x — the official code's choice (Zagoruyko &
Komodakis feed it the pre-activated input instead) — else the identity; output x + y. No dropout.

All convs come from the kit without bias (BN follows or precedes them); BatchNorm is shared by all
members (normalization.py): with `[M, B, ...]` inputs its training statistics are over every
member's rows, as in the official code; under the deep-ensemble `vmap` each member has its own.

L2 groups (resnet20.HPARAMS, the official code's): `l2_input_conv`, `l2_group_1..3` (every conv of a
group, the shortcut conv included), `l2_dense_kernel`, `l2_dense_bias`, and `l2_bn` on γ, β.

Parameter counts, CIFAR-10 / CIFAR-100 (tests/test_resnets.py prints them; official figures in
brackets): plain 36.48 M / 36.54 M [36.5 M]; batch ensemble, M = 4, 36.56 M / 36.62 M [36.6 M] — the
rank-1 factors r, s add only M·(d_in + d_out) per layer; hyper-batch 73.08 M / 73.20 M
[73.1 M / 73.2 M] — the second kernel Δ doubles the network. The remaining difference is
bookkeeping: Keras also counts BatchNorm's running statistics (+17 952); with them the counts agree
to the parameter.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit
from hyper_ensembles.models.normalization import BatchNorm
from hyper_ensembles.models.resnet20 import BN_L2, HPARAMS, global_average_pool, group_l2

__all__ = ['HPARAMS', 'PreActBlock', 'WideResNet']


class PreActBlock(nn.Module):
  """BN → ReLU → conv → BN → ReLU → conv, + (1×1-conv projected where needed) shortcut."""

  kit: LayerKit
  features: int
  stride: int
  l2: str

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool) -> jax.Array:
    y = nn.relu(BatchNorm(l2=BN_L2, name='bn_0')(x, cond, train))
    y = self.kit.conv(self.features, (3, 3), strides=(self.stride,) * 2, kernel_l2=self.l2,
                      use_bias=False, name='conv_0')(y, cond)
    y = nn.relu(BatchNorm(l2=BN_L2, name='bn_1')(y, cond, train))
    y = self.kit.conv(self.features, (3, 3), kernel_l2=self.l2, use_bias=False,
                      name='conv_1')(y, cond)
    if x.shape[-1] != self.features or self.stride != 1:
      x = self.kit.conv(self.features, (1, 1), strides=(self.stride,) * 2, kernel_l2=self.l2,
                        use_bias=False, name='shortcut')(x, cond)
    return x + y


class WideResNet(nn.Module):
  """WRN-depth-width; the defaults give WRN-28-10.

  Input `[B, H, W, C]` (plain form) or `[M, B, H, W, C]` (ensemble forms); output logits with the
  same leading axes.

  Attributes:
    kit: the layer form to build.
    num_classes: output classes.
    depth: 6n + 4 convolutional layers (n blocks per group).
    width: width multiplier k.
  """

  kit: LayerKit
  num_classes: int
  depth: int = 28
  width: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool = False) -> jax.Array:
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f'Wide ResNet depth must be 6n + 4 with n >= 1, got {self.depth}')
    blocks = (self.depth - 4) // 6
    x = self.kit.conv(16, (3, 3), kernel_l2='l2_input_conv', use_bias=False,
                      name='input_conv')(x, cond)
    for group, base in enumerate((16, 32, 64), start=1):
      for block in range(blocks):
        stride = 2 if group > 1 and block == 0 else 1
        x = PreActBlock(self.kit, base * self.width, stride, group_l2(group),
                        name=f'group_{group}_block_{block}')(x, cond, train)
    x = nn.relu(BatchNorm(l2=BN_L2, name='final_bn')(x, cond, train))
    x = global_average_pool(x)
    return self.kit.dense(self.num_classes, kernel_l2='l2_dense_kernel', bias_l2='l2_dense_bias',
                          name='logits')(x, cond)
