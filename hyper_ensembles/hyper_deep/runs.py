"""Running a stage's runs through the launcher.

A `Run` becomes a job: its directory under DIR and the pipeline config with the run's overrides.
Whichever launcher trains it, a complete run is not trained again and the metrics come from its
metrics.json; selection and evaluation read only `predictions/<set>.npz` (predictions.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
from absl import logging

from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.plan import Run
from hyper_ensembles.launching.jobs import Job, is_complete
from hyper_ensembles.launching.local import LocalLauncher
from hyper_ensembles.runs.overrides import apply_overrides

__all__ = ['apply_overrides', 'ensure_run', 'is_complete', 'run_config', 'train_runs']


def run_config(config: ml_collections.ConfigDict, run: Run) -> ml_collections.ConfigDict:
  return apply_overrides(config, run.overrides)


def echo(message: str) -> None:
  """How launchers report progress inside the pipeline: the absl log."""
  logging.info('hyper-deep: %s', message)


def job(config: ml_collections.ConfigDict, workdir: str, run: Run) -> Job:
  return Job(name=run.workdir, workdir=os.path.join(workdir, run.workdir),
             config=run_config(config, run))


def ensure_run(config: ml_collections.ConfigDict, workdir: str, run: Run) -> tuple[dict, bool]:
  """Trains `run` here unless it is complete; returns (its metrics.json, whether it trained now).

  An unfinished run resumes from its latest checkpoint (train.py). A finished one is not even
  loaded, but its config.json is still checked against the one the plan asks for.
  """
  outcome = LocalLauncher(echo).run_one(job(config, workdir, run))
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
