"""Stage `stratify`: K inits of every distinct setting the hyper ensemble chose, then selection.

Reads selection/hyper_ens.json's choice; trains stratify/setting_IIII/members_* (the K − 1 extra
inits of pool setting IIII; the pool member is the K-th) and writes selection/hyper_deep.json, the
greedy selection over these ≤ K² networks: the hyper-deep ensemble.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections

from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.plan import Member, Plan, Run, Settings, population_runs
from hyper_ensembles.hyper_deep.runs import train_runs
from hyper_ensembles.hyper_deep.selection import HYPER_DEEP, Ensemble, selection_stage


@dataclasses.dataclass(frozen=True)
class Stratified:
  """The hyper-deep ensemble, the metrics.json of the extra-init runs, and whether either was
  (re)made now."""

  ensemble: Ensemble
  metrics: list[dict]
  changed: bool


def stratify_runs(config: ml_collections.ConfigDict, settings: Settings, plan: Plan,
                  chosen: Sequence[int]) -> dict[int, tuple[Run, ...]]:
  """For each chosen pool index i, the runs of its K − 1 extra inits (empty when K = 1)."""
  k, kappa = settings.ensemble_size, settings.pool_size
  out = {}
  for i in sorted(chosen):
    if k == 1:
      out[i] = ()
      continue
    first_seed = int(config.seed) + kappa + i * (k - 1)
    out[i] = population_runs(f'stratify/setting_{i:04d}', [plan.settings[i]] * (k - 1),
                             first_seed, settings.chunk_size)
  return out


def run(ctx: Context, pool_members: Sequence[Member], hyper_ens: Ensemble, inputs_changed: bool
        ) -> Stratified:
  if not ctx.settings.stratify:
    ctx.log.record('stratify', False, disabled=True)
    return Stratified(ensemble=hyper_ens, metrics=[], changed=False)
  pool_members = tuple(pool_members)
  chosen = sorted(pool_members.index(m) for m in hyper_ens.members)
  extra = stratify_runs(ctx.config, ctx.settings, ctx.plan, chosen)
  runs = [run for i in chosen for run in extra[i]]
  metrics, trained = train_runs(ctx, runs)
  stratified_pool = []
  for i in chosen:
    stratified_pool.append(pool_members[i])
    stratified_pool.extend(m for run in extra[i] for m in run.members)
  hyper_deep, ran = selection_stage(ctx, HYPER_DEEP, stratified_pool,
                                    inputs_changed or bool(trained))
  ctx.log.record('stratify', bool(trained) or ran, trained=trained,
                 members=[m.seed for m in hyper_deep.members],
                 counts=list(hyper_deep.result.counts))
  return Stratified(ensemble=hyper_deep, metrics=metrics, changed=ran or bool(trained))
