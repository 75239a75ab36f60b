"""The hyper-deep pipeline: plan, then each stage in order (the stage contract: __init__.py)."""

from __future__ import annotations

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
from hyper_ensembles.hyper_deep.runs import Predictions, echo
from hyper_ensembles.launching import launch

# Stages in order; `run_pipeline(until=...)` stops after the named one.
_STAGES = (
    ('pool', pool.run),
    ('select', selection.run),
    ('stratify', stratification.run),
    ('retrain', retraining.run),
    ('fixed_init', baselines.run_fixed_init),
    ('deep_baseline', baselines.run_deep_baseline),
    ('evaluate', scoring.run),
)
STAGES = tuple(name for name, _ in _STAGES)


def run_pipeline(config: ml_collections.ConfigDict, workdir: str, *, until: str | None = None,
                 launcher: launch.LaunchOptions | None = None) -> dict[str, Any]:
  """Runs (or resumes) the hyper-deep ensemble pipeline in `workdir`.

  Args:
    config: a config from configs/default.py (any method name; `hyper_deep` is the usual one).
    workdir: DIR; see the package docstring for its layout.
    until: stop after this stage (one of `STAGES`); None runs everything.
    launcher: how each stage's runs are trained; None: here, one after another. Not part of the
      config: the same DIR may be resumed with another launcher.

  Returns:
    The contents of DIR/metrics.json, or {} when stopped before `evaluate`.
  """
  if until is not None and until not in STAGES:
    raise ValueError(f'until must be one of {STAGES}, got {until!r}')
  settings, plan = plan_pipeline(config, workdir)
  is_main = jax.process_index() == 0
  with launch.create(launcher, echo=echo) as runner:
    ctx = Context(config=config, workdir=workdir, settings=settings, plan=plan, launcher=runner,
                  is_main=is_main, log=StageLog(workdir, is_main), predictions=Predictions(workdir))
    for name, stage in _STAGES:
      stage(ctx)
      if name == until:
        return {}
  return ctx.metrics
