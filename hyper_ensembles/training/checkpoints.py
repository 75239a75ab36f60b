"""Orbax checkpoints of the whole train state.

A checkpoint holds the `TrainState`: model parameters, batch statistics, optimiser state,
hyperparameters, the tuner's λ-distribution parameters and optimiser state (hyper-batch), the step
and the RNG keys. The train and validation streams are pure functions of the step (see
data/streams.py), so the step *is* their position: a run killed at any step and resumed ends with
the same parameters as one never interrupted.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` keyed by train step."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, like):
    """Restores the latest checkpoint into the structure, dtypes and shardings of `like`."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    return self._manager.restore(self.latest_step(), args=ocp.args.StandardRestore(abstract))

  def save(self, step: int, state) -> None:
    if self._manager.latest_step() == step:
      return  # already saved at this step (e.g. periodic save followed by the final one)
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
