"""Orbax checkpoints of the whole train state, and the fallback past a corrupted one.

A checkpoint holds the `TrainState`: model parameters, batch statistics, optimiser state,
hyperparameters, the tuner's λ-distribution parameters and optimiser state (hyper-batch), the step
and the RNG keys. The train and validation streams are pure functions of the step (see
data/streams.py), so the step *is* their position: a run killed at any step and resumed ends with
the same parameters as one never interrupted.

A checkpoint that cannot be restored (truncated array files, garbled metadata: whatever orbax or
tensorstore raise reading it) is skipped with a warning naming it, and the newest intact one is
restored instead. Nothing is deleted: a training run (`set_aside_corrupt=True`) moves the bad
checkpoint to `checkpoints/<step>.corrupt[-n]` so that the step can be saved again; evaluation
only reads. When no checkpoint is intact, `CheckpointError` names the directory and each bad step.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(ValueError):
  """No checkpoint in the directory can be restored (the message names it and why)."""


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0][:200] if text else ""}'


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` keyed by train step."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._max_to_keep = max_to_keep
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, like, set_aside_corrupt: bool = False):
    """Restores the newest intact checkpoint into the structure, dtypes and shardings of `like`.

    Newer checkpoints that fail to restore are skipped with a warning (and, with
    `set_aside_corrupt`, moved to `<step>.corrupt`); CheckpointError when none restores.
    """
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    bad: list[tuple[int, str]] = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:
        path = os.path.join(self.directory, str(step))
        bad.append((step, _first_line(e)))
        logging.warning('Checkpoint %s cannot be restored (%s); trying the previous one.', path,
                        _first_line(e))
        continue
      if bad:
        self._set_aside(bad, restored=step, move=set_aside_corrupt)
      return state
    if bad:
      self._set_aside(bad, restored=None, move=False)
    raise CheckpointError(
        f'No intact checkpoint in {self.directory}: '
        + '; '.join(f'step {s} ({why})' for s, why in bad)
        + '. Nothing was deleted; move the directory away to start the run again from step 0.')

  def _set_aside(self, bad: list[tuple[int, str]], restored: int | None, move: bool) -> None:
    for step, _ in bad:
      path = os.path.join(self.directory, str(step))
      if not move:
        logging.warning('Skipped the unreadable checkpoint %s (kept in place).', path)
        continue
      target, n = f'{path}.corrupt', 1
      while os.path.exists(target):
        target, n = f'{path}.corrupt-{n}', n + 1
      os.replace(path, target)
      logging.warning('Unreadable checkpoint %s moved to %s; resuming from step %s.', path,
                      target, restored)
    if move:
      self._manager.close()
      self._manager = self._open()  # forget the steps moved away

  def save(self, step: int, state) -> None:
    if self._manager.latest_step() == step:
      return  # already saved at this step (e.g. periodic save followed by the final one)
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
