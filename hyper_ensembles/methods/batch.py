"""Batch ensembles (Wen et al. 2020): shared weights with rank-1 per-member factors.

All members see the same images each step: the batch `[1, B, ...]` is augmented once, then
broadcast to `[M, B, ...]` (member-major, an explicit leading axis), and the loss is the mean
cross-entropy over all M·B rows, as in the official implementation.
"""

from __future__ import annotations

import jax.numpy as jnp

from hyper_ensembles.data.preprocess import preprocess
from hyper_ensembles.methods.base import Method, tile_members
from hyper_ensembles.models.conditioning import Conditioning


class BatchEnsemble(Method):
  name = 'batch'
  layer_form = 'batch'

  def _cond(self, hparams: dict) -> Conditioning:
    # One value per member, broadcast over the batch rows: shape [M, 1].
    return Conditioning(hparams={k: v[:, None] for k, v in hparams.items()},
                        zero=self.zero_hparams)

  def init_variables(self, rng):
    dummy = jnp.zeros((self.num_members, 1, *self.info.image_shape), jnp.float32)
    return self.model.init(rng, dummy, self._cond(self.initial_hparams()), train=False)

  def loss(self, params, model_state, hparams, tuner, batch, rng):
    return self._apply_train(
        params, model_state, batch['images'], batch['labels'], self._cond(hparams),
        hparams['label_smoothing'][:, None], rng, tile=self.num_members)

  def predict(self, state, images):
    x = tile_members(preprocess(images, self.info)[None], self.num_members)
    return self.model.apply(
        {'params': state.params, **state.model_state}, x, self._cond(state.hparams), train=False)
