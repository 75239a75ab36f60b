"""The hyper-deep pipeline: plan, then each stage in order (the stage contract: __init__.py).

Each stage takes the read-only `Context` and the results of the stages before it, and returns its
own; `changed` (some stage recomputed an input of later ones) is threaded the same way.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections

from hyper_ensembles.hyper_deep import (
  baselines,
  pool,
  retraining,
  scoring,
  selection,
  stratification,
)
from hyper_ensembles.hyper_deep.context import Context, StageLog
from hyper_ensembles.hyper_deep.plan import plan_pipeline
from hyper_ensembles.hyper_deep.predictions import Predictions
from hyper_ensembles.hyper_deep.runs import echo
from hyper_ensembles.launching import jobs, registry
from hyper_ensembles.runs import workdir as workdir_lib

# Stages in order; `run_pipeline(until=...)` stops after the named one.
STAGES = ('pool', 'select', 'stratify', 'retrain', 'fixed_init', 'deep_baseline', 'evaluate')


def run_pipeline(config: ml_collections.ConfigDict, workdir: str, *, until: str | None = None,
                 launcher: jobs.LaunchOptions | None = None, runner: jobs.Launcher | None = None
                 ) -> dict[str, Any]:
  """Runs (or resumes) the hyper-deep ensemble pipeline in `workdir`.

  Args:
    config: a config from configs/default.py (any method name; `hyper_deep` is the usual one).
    workdir: DIR; see the package docstring for its layout.
    until: stop after this stage (one of `STAGES`); None runs everything.
    launcher: how each stage's runs are trained; None: here, one after another. Not part of the
      config: the same DIR may be resumed with another launcher.
    runner: an open launcher to use instead of one made from `launcher` (left open): a caller
      running several pipelines starts Ray once, before JAX, rather than once per pipeline.

  Returns:
    The contents of DIR/metrics.json, or {} when stopped before `evaluate`.
  """
  if until is not None and until not in STAGES:
    raise ValueError(f'until must be one of {STAGES}, got {until!r}')
  if runner is not None:
    return _run(config, workdir, until, runner)
  # The launcher first (nothing starts until a run needs it), so a bad name fails before planning.
  with registry.create(launcher, echo=echo) as runner:
    return _run(config, workdir, until, runner)


def _run(config: ml_collections.ConfigDict, workdir: str, until: str | None,
         runner: jobs.Launcher) -> dict[str, Any]:
  if not os.path.exists(os.path.join(workdir, workdir_lib.METRICS_FILE)):
    # Planning starts JAX (its random draws, the process index): the launcher's processes first.
    runner.start()
  settings, plan = plan_pipeline(config, workdir)
  is_main = jax.process_index() == 0
  ctx = Context(config=config, workdir=workdir, settings=settings, plan=plan, launcher=runner,
                is_main=is_main, log=StageLog(workdir, is_main), predictions=Predictions(workdir))
  return _run_stages(ctx, until)


def _run_stages(ctx: Context, until: str | None) -> dict[str, Any]:
  """The stages in the order of STAGES; {} after the one `until` names."""
  trained_pool = pool.run(ctx)
  changed = trained_pool.trained
  if until == 'pool':
    return {}
  hyper_ens, ran = selection.run(ctx, trained_pool.members, changed)
  changed |= ran
  if until == 'select':
    return {}
  stratified = stratification.run(ctx, trained_pool.members, hyper_ens, changed)
  changed |= stratified.changed
  if until == 'stratify':
    return {}
  retrained = retraining.run(ctx, stratified.ensemble.members)
  changed |= retrained is not None and retrained.trained
  if until == 'retrain':
    return {}
  fixed_init = baselines.run_fixed_init(ctx)
  changed |= fixed_init is not None and fixed_init.changed
  if until == 'fixed_init':
    return {}
  deep_metrics, deep_trained = baselines.run_deep_baseline(ctx)
  changed |= deep_trained
  if until == 'deep_baseline':
    return {}
  chosen = scoring.Chosen(pool=trained_pool, hyper_ens=hyper_ens, stratified=stratified,
                          retrained=retrained, fixed_init=fixed_init, deep_metrics=deep_metrics)
  return scoring.run(ctx, chosen, changed)
