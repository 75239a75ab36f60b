"""One run's parts from its config: dataset, method, mesh, step counts, train state, checkpoints.

The one factory the training loop (train.py) and evaluation from a checkpoint (evaluate.py) share,
so that a restored state has exactly the structure, dtypes and shardings training saved.
Building is split in stages because the loop records a new workdir's config between them: only
after the inputs are validated (`build_run`), before anything is initialised (`init_state`).
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
import optax
from jax.sharding import Mesh

from hyper_ensembles.data.dataset import Dataset
from hyper_ensembles.data.registry import load_dataset
from hyper_ensembles.data.streams import steps_per_epoch
from hyper_ensembles.methods.base import Method
from hyper_ensembles.methods.registry import create_method
from hyper_ensembles.training import sharding
from hyper_ensembles.training.checkpoints import Checkpointer
from hyper_ensembles.training.optimizers import num_train_steps
from hyper_ensembles.training.state import TrainState, create_train_state

CHECKPOINT_DIR = 'checkpoints'


@dataclasses.dataclass(frozen=True)
class RunParts:
  """What one run is made of, before its train state exists.

  Attributes:
    config: the run config.
    dataset: its data (every split held in memory).
    method: the ensemble method, built from the config's settings.
    mesh: the device mesh.
    steps_per_epoch: train steps in one epoch (data/streams.py `steps_per_epoch`).
    total_steps: the run's length in train steps.
  """

  config: ml_collections.ConfigDict
  dataset: Dataset
  method: Method
  mesh: Mesh
  steps_per_epoch: int
  total_steps: int


def build_run(config: ml_collections.ConfigDict, dataset: Dataset | None = None) -> RunParts:
  """Loads the data (unless given), builds the method and the mesh, checks the batch sizes."""
  if dataset is None:
    dataset = load_dataset(config.dataset, config.data)
  method = create_method(config, dataset.info, dataset.num_train)
  mesh = sharding.create_mesh()
  sharding.check_divisible(config.batch_size, 'batch_size')
  sharding.check_divisible(config.eval_batch_size, 'eval_batch_size')
  per_epoch = steps_per_epoch(dataset.num_train, config.batch_size)
  return RunParts(config=config, dataset=dataset, method=method, mesh=mesh,
                  steps_per_epoch=per_epoch, total_steps=num_train_steps(config, per_epoch))


def init_state(parts: RunParts
               ) -> tuple[TrainState, optax.GradientTransformation, optax.Schedule]:
  """The initial train state (replicated over the mesh), its optimiser and schedule."""
  return create_train_state(parts.method, parts.config, parts.steps_per_epoch, parts.mesh)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINT_DIR)


def open_checkpointer(config: ml_collections.ConfigDict, workdir: str) -> Checkpointer:
  """The checkpoints of the run in `workdir` (the directory is created if absent)."""
  return Checkpointer(checkpoint_dir(workdir), config.max_checkpoints_to_keep)


def restore_latest(parts: RunParts, workdir: str) -> TrainState:
  """The train state of the latest checkpoint in `workdir`, as training saved it.

  Raises:
    FileNotFoundError: `workdir` holds no checkpoint.
  """
  like, _, _ = init_state(parts)
  checkpointer = open_checkpointer(parts.config, workdir)
  try:
    if checkpointer.latest_step() is None:
      raise FileNotFoundError(f'{checkpointer.directory} holds no checkpoint')
    return checkpointer.restore(like)
  finally:
    checkpointer.close()
