"""Deep ensembles (Lakshminarayanan et al. 2017) and the single model (the same with M = 1).

Members are independent networks with their own initialisation and their own data order. They
train in one vectorised program: parameters, optimiser states, hyperparameters and RNGs are
stacked along a leading member axis and the training loop maps one member's update over it
(member_map.py: `vmap`, or members unrolled for convolutional architectures), so member k's
trajectory is that of the same network trained alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hyper_ensembles.data.preprocess import preprocess
from hyper_ensembles.methods.base import Method
from hyper_ensembles.methods.member_map import member_map
from hyper_ensembles.models.conditioning import Conditioning


class DeepEnsemble(Method):
  name = 'deep'
  vectorized = True
  layer_form = 'plain'

  @property
  def num_data_orders(self) -> int:
    return self.num_members

  def _cond(self, hparams: dict) -> Conditioning:
    return Conditioning(hparams=dict(hparams), zero=self.zero_hparams)

  def init_variables(self, rng: jax.Array) -> dict:
    dummy = jnp.zeros((1, *self.info.image_shape), jnp.float32)
    hparams = self.initial_hparams()
    init_one = lambda key, hp: self.model.init(key, dummy, self._cond(hp), train=False)
    return jax.vmap(init_one)(rng, hparams)  # rng: one key per member, [M, 2]

  def loss(self, params, model_state, hparams, tuner, batch, rng):
    return self._apply_train(
        params, model_state, batch['images'], batch['labels'], self._cond(hparams),
        hparams['label_smoothing'], rng)

  def predict(self, state, images):
    x = preprocess(images, self.info)

    def member_logits(params, model_state, hparams):
      return self.model.apply(
          {'params': params, **model_state}, x, self._cond(hparams), train=False)

    logits = member_map(member_logits, (0, 0, 0), self.unroll_members)
    return logits(state.params, state.model_state, state.hparams)


class SingleModel(DeepEnsemble):
  """One network: a deep ensemble of one member, whatever `config.num_members` says."""

  name = 'single'
  fixed_members = 1
