"""LeNet-5-style convolutional network (the paper's LeNet experiments), in any layer form.

conv 6@5×5 → ReLU → max-pool 2 → conv 16@5×5 → ReLU → max-pool 2 → dense 120 → dense 84 → logits.
Both convolutions use SAME padding (LeCun's second conv is VALID) so that the same network also
fits the embedded 8×8 digits; on 28×28 inputs this changes the flattened size from 16·5·5 to
16·7·7. Convolutions and pooling are models/convolution.py's (fast on XLA:CPU). Hyperparameters:
`l2` (all kernels and biases) and `dropout` (after the dense layers).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.convolution import max_pool_2x2
from hyper_ensembles.models.kit import LayerKit
from hyper_ensembles.models.layers import Dropout

HPARAMS = ('l2', 'dropout')


class LeNet(nn.Module):
  kit: LayerKit
  num_classes: int
  conv_features: tuple[int, int] = (6, 16)
  dense_features: tuple[int, int] = (120, 84)

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool = False) -> jax.Array:
    for i, features in enumerate(self.conv_features):
      x = self.kit.conv(features, (5, 5), kernel_l2='l2', bias_l2='l2', name=f'conv_{i}')(x, cond)
      x = max_pool_2x2(nn.relu(x))
    x = x.reshape((*x.shape[:-3], -1))
    for i, features in enumerate(self.dense_features):
      x = self.kit.dense(features, kernel_l2='l2', bias_l2='l2', name=f'dense_{i}')(x, cond)
      x = Dropout('dropout')(nn.relu(x), cond, deterministic=not train)
    return self.kit.dense(self.num_classes, kernel_l2='l2', bias_l2='l2', name='logits')(x, cond)
