"""Hyper-batch ensembles (Wenzel et al. 2020) and the self-tuning-network baseline (M = 1).

This file owns the method: λ-conditioned batch-ensemble members (models/hyper_layers.py), the
tuner (per-member log-uniform distributions over the hyperparameter space and their Adam state,
kept in `TrainState.tuner`), the train loss, the pure tune update and prediction; the training
loop (training/steps.py) jits the tune update and feeds it validation batches. docs/design.md §4:

- **Train step** (model parameters, embeddings included; the distributions t are fixed): the batch
  is tiled over members and λ is drawn per (member, example) from the member's current
  distribution, under `stop_gradient`. Tuned hyperparameters take the sampled values, the others
  the fixed values of `state.hparams`; dropout and label smoothing act per example with their
  sampled values, and the λ-dependent L2 of every hyper layer (closed form, see hyper_layers.py)
  plus any fixed penalty is divided by N. Loss = mean cross-entropy over all M·B rows + penalties.
- **Tune step** (only t moves): every `tune_every_steps` train steps after a warm-up of
  `tune_warmup_epochs`, on a validation batch (the held-out split, repeated, unaugmented) tiled
  over members, model in eval mode, λ reparameterised: loss = ensemble NLL (log-mean-exp over
  members) − τ·mean entropy; Adam on t, then `hparams.project`. Tune step j reads batch j of the
  loop's `TrainStream` over the validation split, and j is a function of the train step
  (`tune_index`), so the checkpointed step is all the validation stream needs to resume exactly.
- **Prediction**: each member at the mean of its distribution. With `eval_samples` = S > 0, member
  k's predictive is the average of the S + 1 softmaxes at its mean and at S extra λ drawn from its
  distribution (the same S draws for every example, fixed by the run's RNG); the returned "logits"
  are then the log of that averaged predictive, so the output stays `[M, B, C]` with one row per
  member and every ensemble metric keeps its meaning.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.preprocess import preprocess
from hyper_ensembles.maths import log_uniform as hp
from hyper_ensembles.maths import predictive
from hyper_ensembles.methods.base import MethodSettings, TuneData, tile_members
from hyper_ensembles.methods.batch import BatchEnsemble
from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit

INITS = ('narrow', 'whole_range', 'log_centred')
# Salts folded into the run key so the tune and evaluation draws never reuse a train-step key
# (train step s uses fold_in(rng, s); no run reaches 2³¹ − 1 steps).
_TUNE_SALT = 2**31 - 1
_EVAL_SALT = 2**31 - 2


@dataclasses.dataclass(frozen=True)
class HyperBatchSettings:
  """What a hyper-batch ensemble needs besides `MethodSettings` (read from `config.hyper`).

  Attributes:
    space: the tuned hyperparameters and their ranges.
    init: how the λ distributions start, one of INITS.
    init_half_width, init_member_spread: the 'log_centred' start (unused by the other inits).
    tau: entropy weight τ of the tune loss.
    entropy: entropy of λ or of log λ, one of `log_uniform.ENTROPIES`.
    tune_learning_rate: Adam's learning rate on t.
    tune_every_steps: train steps between tune steps.
    tune_warmup_steps: train steps before the first tune step.
    validation_batch_size: global batch size of a tune step's validation batch.
    eval_samples: extra λ samples per member at prediction (0: the mean only).
    tie_uv, embedding_std, embedding_hidden, l2_with_fast_weights: hyper-batch layer options
      (models/kit.py `LayerKit`).
  """

  space: hp.HyperparameterSpace
  init: str
  init_half_width: float
  init_member_spread: float
  tau: float
  entropy: str
  tune_learning_rate: float
  tune_every_steps: int
  tune_warmup_steps: int
  validation_batch_size: int
  eval_samples: int
  tie_uv: bool
  embedding_std: float
  embedding_hidden: int
  l2_with_fast_weights: bool


@flax.struct.dataclass
class TunerState:
  """What `TrainState.tuner` holds for hyper-batch ensembles (checkpointed with the state).

  Attributes:
    dist: the per-member log-uniform distributions t = (log a, log b), `[M, D]` each.
    opt_state: the tuner's Adam state for `dist`.
  """

  dist: hp.LogUniformParams
  opt_state: Any


class HyperBatchEnsemble(BatchEnsemble):
  """Hyper-batch ensemble: batch-ensemble members conditioned on their own tuned λ."""

  name = 'hyper_batch'
  layer_form = 'hyper_batch'

  def __init__(self, settings: MethodSettings, info: DatasetInfo, num_train: int,
               hyper: HyperBatchSettings):
    # Set before the base class builds the model: `layer_kit` reads the layer options.
    self.hyper = hyper
    self.space = hyper.space
    self.tau = hyper.tau
    self.entropy = hyper.entropy
    self.tune_every_steps = hyper.tune_every_steps
    self.tune_warmup_steps = hyper.tune_warmup_steps
    self.eval_samples = hyper.eval_samples
    self.tuner_tx = optax.adam(hyper.tune_learning_rate)
    super().__init__(settings, info, num_train)

  def layer_kit(self) -> LayerKit:
    return dataclasses.replace(
        super().layer_kit(), tie_uv=self.hyper.tie_uv, embedding_std=self.hyper.embedding_std,
        embedding_hidden=self.hyper.embedding_hidden,
        l2_with_fast_weights=self.hyper.l2_with_fast_weights)

  # ---- λ → what the model reads ----------------------------------------------------------------
  def conditioning(self, hparams: dict, lam: jax.Array) -> Conditioning:
    """Per-row hyperparameters `[M, R]` and λ̃ `[M, R, D]` for λ `[M, R, D]`.

    Tuned hyperparameters come from λ; the others are the fixed per-member values `hparams`
    (`{name: [M]}`), broadcast over the rows.
    """
    rows = lam.shape[:2]
    values = {}
    for name in self.hparam_names:
      if name in self.space.names:
        values[name] = lam[..., self.space.index(name)]
      else:
        values[name] = jnp.broadcast_to(jnp.asarray(hparams[name])[:, None], rows)
    # Fixed hyperparameters that are 0 for every member let layers skip their work (dropout masks).
    zero = frozenset(n for n in self.zero_hparams if n not in self.space.names)
    return Conditioning(hparams=values, lam_tilde=hp.normalize(self.space, lam), zero=zero)

  # ---- variables -------------------------------------------------------------------------------
  def init_variables(self, rng):
    m = self.num_members
    dummy = jnp.zeros((m, 1, *self.info.image_shape), jnp.float32)
    lam = jnp.broadcast_to(jnp.asarray(self.space.mins, jnp.float32), (m, 1, self.space.dim))
    return self.model.init(rng, dummy, self.conditioning(self.initial_hparams(), lam), train=False)

  def init_tuner(self, rng: jax.Array) -> TunerState:
    if self.hyper.init == 'narrow':
      dist = hp.init_narrow(rng, self.space, self.num_members)
    elif self.hyper.init == 'log_centred':
      dist = hp.init_log_centred(rng, self.space, self.num_members,
                                 half_width=self.hyper.init_half_width,
                                 spread=self.hyper.init_member_spread)
    else:
      dist = hp.init_whole_range(self.space, self.num_members)
    return TunerState(dist=dist, opt_state=self.tuner_tx.init(dist))

  # ---- training --------------------------------------------------------------------------------
  def loss(self, params, model_state, hparams, tuner, batch, rng):
    k_lam, k_train = jax.random.split(rng)
    # No gradient reaches t from the train loss: t only moves in the tune step.
    dist = jax.lax.stop_gradient(tuner.dist)
    lam = hp.sample(k_lam, dist, batch['images'].shape[1])
    cond = self.conditioning(hparams, lam)
    loss, (model_state, metrics) = self._apply_train(
        params, model_state, batch['images'], batch['labels'], cond, cond.get('label_smoothing'),
        k_train, tile=self.num_members)
    return loss, (model_state, metrics)

  # ---- tuning ----------------------------------------------------------------------------------
  @property
  def tune_data(self) -> TuneData:
    return TuneData(batch_size=self.hyper.validation_batch_size,
                    config_key='hyper.validation_batch_size')

  def tune_index(self, step: int) -> int | None:
    """Tune-step number j after train step `step` (0-based), or None if no tune step follows it.

    Tune steps follow train steps done = step + 1 with done > warm-up and (done − warm-up) a
    multiple of `tune_every_steps`.
    """
    since = step + 1 - self.tune_warmup_steps
    if since <= 0 or since % self.tune_every_steps:
      return None
    return since // self.tune_every_steps - 1

  def tune_loss(self, dist: hp.LogUniformParams, params, model_state, hparams, batch: dict,
                rng: jax.Array) -> tuple[jax.Array, dict]:
    """Ensemble NLL − τ·mean entropy on a validation batch `{'images': [1, b, ...], 'labels'}`.

    Eval mode (running statistics, no dropout, plain labels); λ reparameterised, so the gradient
    w.r.t. t flows through the embeddings e(λ̃) and through the entropy only.
    """
    images = tile_members(preprocess(batch['images'], self.info), self.num_members)
    lam = hp.sample(rng, dist, images.shape[1])
    logits = self.model.apply(
        {'params': params, **model_state}, images, self.conditioning(hparams, lam), train=False)
    nll = predictive.ensemble_nll(logits, batch['labels'][0])
    entropy = hp.mean_entropy(dist, self.entropy)
    loss = nll - self.tau * entropy
    return loss, {'tune_loss': loss, 'tune_nll': nll, 'tune_entropy': entropy}

  def tune_update(self, state, batch: dict):
    """One tune step: Adam on t only, then the projection. Pure; training/steps.py jits it."""
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, _TUNE_SALT), state.step)
    grads, metrics = jax.grad(self.tune_loss, has_aux=True)(
        state.tuner.dist, state.params, state.model_state, state.hparams, batch, rng)
    updates, opt_state = self.tuner_tx.update(grads, state.tuner.opt_state, state.tuner.dist)
    dist = hp.project(optax.apply_updates(state.tuner.dist, updates), self.space)
    return state.replace(tuner=TunerState(dist=dist, opt_state=opt_state)), metrics

  def final_hyperparameters(self, state) -> dict[str, dict[str, list[float]]]:
    """`{name: {'lower': [M], 'upper': [M], 'mean': [M]}}`: each member's λ distribution."""
    dist = jax.device_get(state.tuner.dist)
    log_a, log_b = np.asarray(dist.log_a, np.float64), np.asarray(dist.log_b, np.float64)
    a, b = np.exp(log_a), np.exp(log_b)
    width = log_b - log_a
    mean = np.where(width > 0, (b - a) / np.where(width > 0, width, 1.0), a)
    return {name: {'lower': a[:, j].tolist(), 'upper': b[:, j].tolist(),
                   'mean': mean[:, j].tolist()} for j, name in enumerate(self.space.names)}

  def tuner_summaries(self, state) -> dict[str, float]:
    """Per member and tuned hyperparameter: bounds a, b and mean of the λ distribution."""
    out = {}
    for name, stats in self.final_hyperparameters(state).items():
      for stat, values in stats.items():
        for k, value in enumerate(values):
          out[f'hyper/{name}/member_{k}/{stat}'] = value
    return out

  # ---- prediction ------------------------------------------------------------------------------
  def predict(self, state, images):
    m, s = self.num_members, self.eval_samples
    x = preprocess(images, self.info)[None]  # [1, B, ...]
    batch = x.shape[1]
    lam = hp.mean(state.tuner.dist)[:, None, :]  # [M, 1, D]
    if s:
      rng = jax.random.fold_in(state.rng, _EVAL_SALT)
      lam = jnp.concatenate([lam, hp.sample(rng, state.tuner.dist, s)], axis=1)  # [M, S+1, D]
    # Rows are (setting, example) pairs, setting-major: [M, (S+1)·B, ...].
    lam = jnp.repeat(lam, batch, axis=1)
    x = jnp.broadcast_to(x, (m, s + 1, *x.shape[1:])).reshape((m, (s + 1) * batch,
                                                                *x.shape[2:]))
    logits = self.model.apply({'params': state.params, **state.model_state}, x,
                              self.conditioning(state.hparams, lam), train=False)
    if not s:
      return logits
    log_probs = jax.nn.log_softmax(logits.reshape((m, s + 1, batch, -1)), axis=-1)
    return jax.nn.logsumexp(log_probs, axis=1) - math.log(s + 1)


class SelfTuningNetwork(HyperBatchEnsemble):
  """Self-tuning network baseline (MacKay et al. 2019), as the paper runs it: a hyper-batch
  ensemble with a single member, whatever `config.num_members` says."""

  name = 'stn'
  fixed_members = 1
