"""Stages `fixed_init` and `deep_baseline`: the paper's baselines trained beside the pipeline.

fixed_init (hyper_deep.fixed_init_baseline) trains fixed_init_pool/members_*: the pool's settings,
seeds and data orders, but every member from one shared init; its greedy selection is
selection/fixed_init_hyper_ens.json. deep_baseline (hyper_deep.deep_baseline) trains
deep_baseline/: the default setting with K inits, exactly what `method=deep` trains.
"""

from __future__ import annotations

import dataclasses

from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.runs import train_runs
from hyper_ensembles.hyper_deep.selection import FIXED_INIT_HYPER_ENS, Ensemble, selection_stage


@dataclasses.dataclass(frozen=True)
class FixedInit:
  """The fixed-init hyper ensemble, its runs' metrics.json, and whether either was made now."""

  ensemble: Ensemble
  metrics: list[dict]
  changed: bool


def run_fixed_init(ctx: Context) -> FixedInit | None:
  """None when the baseline is off."""
  if not ctx.plan.fixed_init:
    ctx.log.record('fixed_init', False, disabled=True)
    return None
  metrics, trained = train_runs(ctx, ctx.plan.fixed_init)
  fixed_members = tuple(m for run in ctx.plan.fixed_init for m in run.members)
  ensemble, ran = selection_stage(ctx, FIXED_INIT_HYPER_ENS, fixed_members, bool(trained))
  ctx.log.record('fixed_init', bool(trained) or ran, trained=trained)
  return FixedInit(ensemble=ensemble, metrics=metrics, changed=ran or bool(trained))


def run_deep_baseline(ctx: Context) -> tuple[dict | None, bool]:
  """(The deep baseline's metrics.json, whether it was trained now); (None, False) when off."""
  if ctx.plan.deep_baseline is None:
    ctx.log.record('deep_baseline', False, disabled=True)
    return None, False
  (metrics,), trained = train_runs(ctx, [ctx.plan.deep_baseline])
  ctx.log.record('deep_baseline', bool(trained), trained=trained)
  return metrics, bool(trained)
