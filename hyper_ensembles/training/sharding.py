"""The device mesh and how arrays are laid out on it.

One 1-D mesh `('data',)` over every device of every host. Batches are sharded along their example
axis, everything else (parameters, optimiser state, hyperparameters) is replicated. Each process
holds only its own rows of a global batch and `to_global` assembles the global array from them.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'


def create_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, example_axis: int) -> NamedSharding:
  """Shards axis `example_axis` over the data axis (batches of the train stream are `[S, B, ...]`,
  evaluation batches `[B, ...]`)."""
  return NamedSharding(mesh, P(*([None] * example_axis), DATA_AXIS))


def check_divisible(global_batch_size: int, what: str) -> None:
  """A global batch must split evenly over devices (and hence over processes)."""
  devices = jax.device_count()
  if global_batch_size % devices:
    raise ValueError(
        f'{what}={global_batch_size} does not divide evenly over {devices} devices; choose a '
        f'multiple of {devices}')


def to_global(local: np.ndarray, mesh: Mesh, example_axis: int) -> jax.Array:
  """Assembles a global array from this process's rows (along `example_axis`)."""
  sharding = batch_sharding(mesh, example_axis)
  global_shape = list(local.shape)
  global_shape[example_axis] *= jax.process_count()
  return jax.make_array_from_process_local_data(sharding, local, tuple(global_shape))


def process_rows(global_batch_size: int) -> slice:
  """This process's slice of the rows of a global batch."""
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)
