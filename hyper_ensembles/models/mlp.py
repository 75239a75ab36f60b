"""Multi-layer perceptron (the paper's MLP experiments), in any layer form.

Hyperparameters it reads: `l2` (every kernel and bias) and `dropout` (after every hidden layer),
the two the paper tunes for MLPs (appendix; docs/design.md §6).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit
from hyper_ensembles.models.layers import Dropout

HPARAMS = ('l2', 'dropout')


class MLP(nn.Module):
  """Flatten → [dense → ReLU → dropout] × len(hidden) → dense logits."""

  kit: LayerKit
  num_classes: int
  hidden: tuple[int, ...] = (200, 200)

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool = False) -> jax.Array:
    x = x.reshape((*x.shape[:-3], -1))
    for i, width in enumerate(self.hidden):
      x = self.kit.dense(width, kernel_l2='l2', bias_l2='l2', name=f'hidden_{i}')(x, cond)
      x = nn.relu(x)
      x = Dropout('dropout')(x, cond, deterministic=not train)
    return self.kit.dense(self.num_classes, kernel_l2='l2', bias_l2='l2', name='logits')(x, cond)
