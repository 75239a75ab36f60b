"""The train state and its factory.

Vectorised methods (deep ensembles, single models, random-search pools) carry a leading member
axis on params, model_state, opt_state, hparams and rng; member k is seeded with `seed + k`, so
member k of an ensemble is exactly the network a single-model run with seed `seed + k` trains.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.linen import meta
from jax.sharding import Mesh

from hyper_ensembles.methods.base import Method, split_variables
from hyper_ensembles.models.layers import parameter_labels
from hyper_ensembles.training import sharding
from hyper_ensembles.training.optimizers import create_optimizer, num_train_steps


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: dict  # non-parameter variables, e.g. batch_stats
  opt_state: Any
  hparams: dict  # {name: [M]} per-member hyperparameter values
  tuner: Any  # λ-distribution parameters and their optimiser state (hyper-batch), else None
  rng: jax.Array  # per-member keys [M, 2] for vectorised methods, else one key [2]
  train_seconds: jax.Array  # wall-clock spent in training so far, carried across resumes


def root_keys(method: Method, seed: int) -> jax.Array:
  if method.vectorized:
    return jnp.stack([jax.random.PRNGKey(seed + k) for k in range(method.num_members)])
  return jax.random.PRNGKey(seed)


def create_train_state(method: Method, config: ml_collections.ConfigDict, steps_per_epoch: int,
                       mesh: Mesh
                       ) -> tuple[TrainState, optax.GradientTransformation, optax.Schedule]:
  """Initialises the state (replicated over the mesh); returns it, its optimiser and schedule."""
  keys = root_keys(method, config.seed)
  split = jax.vmap(jax.random.split) if method.vectorized else jax.random.split
  first = lambda k: k[:, 0] if method.vectorized else k[0]
  second = lambda k: k[:, 1] if method.vectorized else k[1]

  def init_keys(subkeys):
    # config.init_seed >= 0: every member starts from the init member 0 of a run seeded
    # init_seed gets (fixed-init hyper ensembles); dropout and data order stay per member.
    own = first(subkeys)
    init_seed = config.get('init_seed', -1)
    if init_seed < 0:
      return own
    shared = first(split(root_keys(method, init_seed)))
    return jnp.broadcast_to(shared[0], own.shape) if method.vectorized else shared

  def init_boxed():
    subkeys = split(keys)
    return method.init_variables(init_keys(subkeys))

  labels = parameter_labels(jax.eval_shape(init_boxed)['params'])
  tx, schedule = create_optimizer(config.optimizer, steps_per_epoch, labels,
                                  num_train_steps(config, steps_per_epoch))

  def init():
    subkeys = split(keys)
    variables = meta.unbox(method.init_variables(init_keys(subkeys)))
    params, model_state = split_variables(variables)
    opt_init = jax.vmap(tx.init) if method.vectorized else tx.init
    train_keys = second(subkeys)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
        opt_state=opt_init(params), hparams=method.initial_hparams(),
        tuner=method.init_tuner(jax.random.fold_in(jnp.atleast_2d(train_keys)[0], 1)),
        rng=train_keys, train_seconds=jnp.zeros((), jnp.float32))

  state = jax.jit(init, out_shardings=sharding.replicated(mesh))()
  return state, tx, schedule


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
