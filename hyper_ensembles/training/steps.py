"""The train step and the tune step: pure updates of the train state, and their jit and data.

`make_train_step` builds the pure `(state, batch) → (state, metrics)`; `jit_train_step` is the one
jit of it that the loop and scripts/benchmark.py use. Methods with a tuner (`Method.tune_data` is
not None: hyper-batch ensembles) also get a tune step here: the loop, not the method, owns its jit,
its shardings and its validation stream. Tune step j reads batch j of a `TrainStream` over the
validation split, and j is a function of the train step (`Method.tune_index`), so the checkpointed
step is all the stream needs to resume exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from hyper_ensembles.data.dataset import ArraySplit
from hyper_ensembles.data.streams import TrainStream
from hyper_ensembles.methods.base import Method
from hyper_ensembles.methods.member_map import member_map
from hyper_ensembles.training import sharding
from hyper_ensembles.training.state import TrainState

# `tune(state, step) → (state, metrics)`, called after train step `step`; metrics are {} when no
# tune step follows it (the state is then handed back untouched).
TuneStep = Callable[[TrainState, int], tuple[TrainState, dict]]


def make_train_step(method: Method, tx: optax.GradientTransformation):
  """Pure `(state, batch) → (state, metrics)`; for vectorised methods one member's update mapped
  over the members (`member_map`: `vmap`, unrolled for convolutional architectures)."""

  def member_update(params, model_state, opt_state, hparams, tuner, batch, rng):
    grad_fn = jax.value_and_grad(method.loss, has_aux=True)
    (_, (model_state, metrics)), grads = grad_fn(
        params, model_state, hparams, tuner, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), model_state, opt_state, metrics

  def train_step(state: TrainState, batch: dict):
    args = (state.params, state.model_state, state.opt_state, state.hparams, state.tuner, batch)
    if method.vectorized:
      rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(state.rng, state.step)
      update = member_map(member_update, (0, 0, 0, 0, None, 0, 0), method.unroll_members)
      params, model_state, opt_state, metrics = update(*args, rngs)
      metrics = jax.tree.map(jnp.mean, metrics)
    else:
      rng = jax.random.fold_in(state.rng, state.step)
      params, model_state, opt_state, metrics = member_update(*args, rng)
    new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def jit_train_step(method: Method, tx: optax.GradientTransformation):
  """`make_train_step` jitted as the loop runs it (the state donated); the benchmark times this."""
  return jax.jit(make_train_step(method, tx), donate_argnums=0)


def make_tune_step(method: Method, validation: ArraySplit, seed: int, mesh: Mesh
                   ) -> TuneStep | None:
  """The jitted tune step over a stream of `validation` batches; None for a method without tuner.

  Args:
    method: the run's method; its `tune_data` sets the validation batch size.
    validation: the split the tuner's batches come from.
    seed: the run's seed (the validation stream's order).
    mesh: the device mesh; batches are sharded over it, the state stays replicated.
  """
  need = method.tune_data
  if need is None:
    return None
  sharding.check_divisible(need.batch_size, need.config_key)
  stream = TrainStream(validation, need.batch_size, 1, seed,
                       rows=sharding.process_rows(need.batch_size), what=need.config_key)
  replicated = sharding.replicated(mesh)
  update = jax.jit(method.tune_update, donate_argnums=0, out_shardings=(replicated, replicated))

  def tune(state: TrainState, step: int) -> tuple[TrainState, dict]:
    j = method.tune_index(step)
    if j is None:
      return state, {}
    batch = {k: sharding.to_global(v, mesh, 1) for k, v in stream.batch(j).items()}
    return update(state, batch)

  return tune
