"""Stage `pool`: the random search — κ settings, each with its own init — trained as runs.

Reads the plan (plan.py); writes pool/members_AAAA_BBBB/, ordinary `deep` run directories of
`hyper_deep.chunk_size` members each.
"""

from __future__ import annotations

import dataclasses

from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.plan import Member
from hyper_ensembles.hyper_deep.runs import train_runs


@dataclasses.dataclass(frozen=True)
class Pool:
  """The trained random search: its runs' metrics.json, its members in plan order, and whether
  any run was trained now."""

  metrics: list[dict]
  members: tuple[Member, ...]
  trained: bool


def run(ctx: Context) -> Pool:
  metrics, trained = train_runs(ctx, ctx.plan.pool)
  ctx.log.record('pool', bool(trained), trained=trained, runs=len(ctx.plan.pool))
  return Pool(metrics=metrics, members=tuple(m for run in ctx.plan.pool for m in run.members),
              trained=bool(trained))
