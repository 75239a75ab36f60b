"""Stage `pool`: the random search — κ settings, each with its own init — trained as runs.

Reads the plan (plan.py); writes pool/members_AAAA_BBBB/, ordinary `deep` run directories of
`hyper_deep.chunk_size` members each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyper_ensembles.hyper_deep.runs import train_runs

if TYPE_CHECKING:
  from hyper_ensembles.hyper_deep.context import Context


def run(ctx: Context) -> None:
  ctx.pool_metrics, trained = train_runs(ctx, ctx.plan.pool)
  ctx.changed = bool(trained)
  ctx.log.record('pool', ctx.changed, trained=trained, runs=len(ctx.plan.pool))
  ctx.pool_members = tuple(m for run in ctx.plan.pool for m in run.members)
