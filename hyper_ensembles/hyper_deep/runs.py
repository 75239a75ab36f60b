"""Running a stage's runs (through the launcher) and reading their saved predictions back.

A `Run` becomes a job: its directory under DIR and the pipeline config with the run's overrides.
Whichever launcher trains it, a complete run is not trained again and the metrics come from its
metrics.json; selection and evaluation read only `predictions/<set>.npz`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import ml_collections
import numpy as np
from absl import logging

from hyper_ensembles.hyper_deep.plan import Member, Run
from hyper_ensembles.launching import launch
from hyper_ensembles.launching.launch import is_complete
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.runs.overrides import apply_overrides

if TYPE_CHECKING:
  from hyper_ensembles.hyper_deep.context import Context

__all__ = ['Predictions', 'apply_overrides', 'ensure_run', 'is_complete', 'run_config',
           'train_runs']


def run_config(config: ml_collections.ConfigDict, run: Run) -> ml_collections.ConfigDict:
  return apply_overrides(config, run.overrides)


def echo(message: str) -> None:
  """How launchers report progress inside the pipeline: the absl log."""
  logging.info('hyper-deep: %s', message)


def job(config: ml_collections.ConfigDict, workdir: str, run: Run) -> launch.Job:
  return launch.Job(name=run.workdir, workdir=os.path.join(workdir, run.workdir),
                    config=run_config(config, run))


def ensure_run(config: ml_collections.ConfigDict, workdir: str, run: Run) -> tuple[dict, bool]:
  """Trains `run` here unless it is complete; returns (its metrics.json, whether it trained now).

  An unfinished run resumes from its latest checkpoint (train.py). A finished one is not even
  loaded, but its config.json is still checked against the one the plan asks for.
  """
  outcome = launch.LocalLauncher(echo).run_one(job(config, workdir, run))
  return outcome.metrics, outcome.status == 'trained'


def train_runs(ctx: Context, runs: Sequence[Run]) -> tuple[list[dict], list[str]]:
  """Trains (or skips) `runs` with the context's launcher: (their metrics, the ones trained now)."""
  outcomes = ctx.launcher.run([job(ctx.config, ctx.workdir, run) for run in runs])
  for o in outcomes:
    if o.metrics is None:
      raise FileNotFoundError(
          f'{o.job.name} finished on another machine, but {o.job.workdir}/metrics.json is not '
          f'visible here: the pipeline directory must be on a filesystem every Ray node shares.')
  return [o.metrics for o in outcomes], [o.job.name for o in outcomes if o.status == 'trained']


class Predictions:
  """Reads member logits from the runs' `predictions/<set>.npz`, each file once."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

  def _run(self, run: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    key = (run, name)
    if key not in self._cache:
      self._cache[key] = workdir_lib.read_predictions(os.path.join(self.workdir, run), name)
    return self._cache[key]

  def stack(self, members: Sequence[Member], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits `[P, N, C]` of `members` on eval set `name`, and its labels `[N]`."""
    labels = None
    logits = []
    for m in members:
      run_logits, run_labels = self._run(m.run, name)
      if labels is None:
        labels = run_labels
      elif not np.array_equal(labels, run_labels):
        raise ValueError(f'{m.run} has different {name} labels from the other runs')
      logits.append(run_logits[m.index])
    return np.stack(logits), labels

  def eval_sets(self, run: str) -> list[str]:
    """Names of the evaluation sets a run saved predictions for, validation and test first."""
    directory = os.path.join(self.workdir, run, workdir_lib.PREDICTIONS_DIR)
    names = [f[:-4] for f in os.listdir(directory) if f.endswith('.npz')]
    first = [n for n in ('validation', 'test') if n in names]
    return first + sorted(set(names) - set(first))
