"""Batch normalisation for the ResNets, shared by all members, with an explicit L2 group.

This file owns `BatchNorm`: one scale γ and shift β per channel and one set of running statistics,
whatever the layer form. That is the official hyper-batch / batch-ensemble code's choice (a plain
Keras BatchNormalization between ensemble conv layers), so:

- batch-ensemble and hyper-batch models call it on `[M, B, ..., C]` activations and, in training,
  the batch statistics are taken over **all members' rows together** (every axis but the channel
  axis), exactly as the official code normalises its member-major tiled batch `[M·B, ..., C]`;
- plain models see `[B, ..., C]`; under the deep-ensemble method's `vmap` every member has its own
  γ, β and running statistics, as independently trained networks do.

Under our SPMD data parallelism (`jit` over a sharded batch) the statistics are those of the whole
global batch (synchronised BN); the official TPU runs normalise per replica. With the official 128
unique images per step the two differ only in the per-replica batch size they average over.

L2: γ and β are penalised with the coefficient of the hyperparameter named by `l2` (the official
code puts a fixed 15 on them, which with our ν·‖θ‖²/N convention is the `l2_bn` hyperparameter set
to 15 and left out of any tuned space). The penalty is sown like the other layers' (`sow_l2`).

Defaults ε = 1e-5 and momentum 0.9 are the official code's (Torch's defaults; running statistics
← 0.9 · running + 0.1 · batch).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.layers import sow_l2

BATCH_STATS = 'batch_stats'


class BatchNorm(nn.Module):
  """Per-channel batch normalisation over every leading axis; running stats in `batch_stats`.

  Attributes:
    l2: hyperparameter name of the L2 coefficient of γ and β (None: unregularised).
    momentum: running statistics ← momentum · running + (1 − momentum) · batch statistics.
    epsilon: added to the variance.
  """

  l2: str | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, train: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    running_mean = self.variable(BATCH_STATS, 'mean', jnp.zeros, (features,))
    running_var = self.variable(BATCH_STATS, 'var', jnp.ones, (features,))
    if train:
      # All leading axes — members included — are rows of one batch (see the module docstring).
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axis=axes)
      var = jnp.mean(jnp.square(x - mean), axis=axes)
      # Init runs in eval mode, so this only ever updates real running statistics; the guard keeps
      # `init(..., train=True)` from recording the dummy batch.
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    else:
      mean, var = running_mean.value, running_var.value
    y = (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
    sow_l2(self, cond, self.l2, jnp.sum(scale**2) + jnp.sum(bias**2), per_member=False)
    return y
