"""Stages `fixed_init` and `deep_baseline`: the paper's baselines trained beside the pipeline.

fixed_init (hyper_deep.fixed_init_baseline) trains fixed_init_pool/members_*: the pool's settings,
seeds and data orders, but every member from one shared init; its greedy selection is
selection/fixed_init_hyper_ens.json. deep_baseline (hyper_deep.deep_baseline) trains
deep_baseline/: the default setting with K inits, exactly what `method=deep` trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyper_ensembles.hyper_deep.runs import train_runs
from hyper_ensembles.hyper_deep.selection import FIXED_INIT_HYPER_ENS, selection_stage

if TYPE_CHECKING:
  from hyper_ensembles.hyper_deep.context import Context


def run_fixed_init(ctx: Context) -> None:
  if not ctx.plan.fixed_init:
    ctx.log.record('fixed_init', False, disabled=True)
    return
  ctx.fixed_metrics, trained = train_runs(ctx, ctx.plan.fixed_init)
  fixed_members = tuple(m for run in ctx.plan.fixed_init for m in run.members)
  ctx.fixed_ens, ran = selection_stage(ctx, FIXED_INIT_HYPER_ENS, fixed_members, bool(trained))
  ctx.changed |= ran or bool(trained)
  ctx.log.record('fixed_init', bool(trained) or ran, trained=trained)


def run_deep_baseline(ctx: Context) -> None:
  if ctx.plan.deep_baseline is None:
    ctx.log.record('deep_baseline', False, disabled=True)
    return
  (ctx.deep_metrics,), trained = train_runs(ctx, [ctx.plan.deep_baseline])
  ctx.changed |= bool(trained)
  ctx.log.record('deep_baseline', bool(trained), trained=trained)
