"""Stage `retrain` (hyper_deep.retrain_on_train_plus_val): the chosen members on train ∪ validation.

Reads the hyper-deep ensemble (selection/hyper_deep.json's choice); trains retrain/seeds_AAAA_BBBB/
(`_init_IIII` added when the members share the init of seed IIII): every distinct member again,
same seed and setting, with `config.data.train_on_validation`. Each original member's retrained
twin replaces it in the final ensemble, with the weight the selection gave the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.plan import Member, Run
from hyper_ensembles.hyper_deep.runs import train_runs


@dataclasses.dataclass(frozen=True)
class Retrained:
  """The retraining runs, each chosen member's twin keyed by `(init_seed, seed)`, the runs'
  metrics.json, and whether any run was trained now."""

  runs: tuple[Run, ...]
  twins: dict[tuple[int, int], Member]
  metrics: list[dict]
  trained: bool


def retrain_runs(members: Sequence[Member], chunk_size: int
                 ) -> tuple[tuple[Run, ...], dict[tuple[int, int], Member]]:
  """Runs retraining the distinct `members` on train ∪ validation, and each one's retrained twin.

  The twins are keyed by `(init_seed, seed)`, which identifies a member of one selection's pool.
  Only members with consecutive seeds and the same `init_seed` share a run (member k of a run
  seeded s is seeded s + k); see the module docstring for the directory names.
  """
  distinct: list[Member] = []
  for m in members:
    if m not in distinct:
      distinct.append(m)
  distinct.sort(key=lambda m: (m.init_seed, m.seed))
  groups: list[list[Member]] = []
  for m in distinct:
    last = groups[-1] if groups else None
    if last and (last[-1].init_seed, last[-1].seed) == (m.init_seed, m.seed):
      raise ValueError(f'Two chosen members share seed {m.seed} (init_seed {m.init_seed}); a '
                       f'retraining run could not tell them apart.')
    if (last and len(last) < chunk_size and last[-1].init_seed == m.init_seed
        and last[-1].seed + 1 == m.seed):
      last.append(m)
    else:
      groups.append([m])
  runs, twins = [], {}
  for group in groups:
    first, init_seed = group[0].seed, group[0].init_seed
    workdir = f'retrain/seeds_{first:04d}_{first + len(group):04d}'
    if init_seed >= 0:
      workdir += f'_init_{init_seed:04d}'
    overrides: dict[str, Any] = {
        'method': 'deep', 'num_members': len(group), 'seed': first, 'init_seed': init_seed,
        'data.train_on_validation': True}
    for name in sorted(group[0].hparams):
      overrides[f'member_hparams.{name}'] = [m.hparams[name] for m in group]
    retrained = tuple(dataclasses.replace(m, run=workdir, index=k) for k, m in enumerate(group))
    for m in retrained:
      twins[(m.init_seed, m.seed)] = m
    runs.append(Run(workdir=workdir, overrides=overrides, members=retrained))
  return tuple(runs), twins


def run(ctx: Context, members: Sequence[Member]) -> Retrained | None:
  """Retrains the hyper-deep ensemble's distinct `members`; None when retraining is off."""
  if not ctx.settings.retrain:
    ctx.log.record('retrain', False, disabled=True)
    return None
  runs, twins = retrain_runs(members, ctx.settings.chunk_size)
  metrics, trained = train_runs(ctx, runs)
  ctx.log.record('retrain', bool(trained), trained=trained, runs=len(runs),
                 members=sorted(seed for _, seed in twins))
  return Retrained(runs=runs, twins=twins, metrics=metrics, trained=bool(trained))
