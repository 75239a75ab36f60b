"""Stage `select`: greedy selection over the pool → the hyper ensemble; and every selection's file.

Owns `Ensemble` (a candidate pool and the greedy result over it), the names of the ensembles in
metrics.json["baselines"] and selection.json, and DIR/selection/<ensemble>.json, which later
invocations reuse while its pool is the same and no input was retrained.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.plan import Member
from hyper_ensembles.hyper_deep.predictions import Predictions
from hyper_ensembles.maths import greedy_selection as selection_lib
from hyper_ensembles.runs import workdir as workdir_lib

SELECTION_DIR = 'selection'

# Names of the ensembles in metrics.json["baselines"] and selection.json.
HYPER_DEEP = 'hyper_deep'
HYPER_ENS = 'hyper_ens'
FIXED_INIT_HYPER_ENS = 'fixed_init_hyper_ens'
BEST_SINGLE = 'best_single'
DEEP_ENS = 'deep_ens'
HYPER_DEEP_BEFORE_RETRAIN = 'hyper_deep_before_retrain'


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """A selected ensemble: its candidate pool and the greedy selection over it."""

  pool: tuple[Member, ...]
  result: selection_lib.SelectionResult

  @property
  def members(self) -> tuple[Member, ...]:
    return tuple(self.pool[i] for i in self.result.members)

  def to_json(self) -> dict[str, Any]:
    return {'pool': [m.to_json() for m in self.pool], 'selection': self.result.to_json()}

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> Ensemble:
    return cls(pool=tuple(Member.from_json(m) for m in d['pool']),
               result=selection_lib.SelectionResult.from_json(d['selection']))

  def summary(self) -> dict[str, Any]:
    """What selection.json says about this ensemble."""
    members = []
    for member, count, weight in zip(self.members, self.result.counts, self.result.weights):
      members.append({**member.to_json(), 'count': int(count), 'weight': float(weight)})
    return {
        'members': members,
        'picks': [self.pool[i].to_json() | {'pool_index': int(i)} for i in self.result.picks],
        'validation_nll_history': [float(v) for v in self.result.nll_history],
        'validation_nll': float(self.result.nll),
        'pool_size': len(self.pool),
    }


def select(predictions: Predictions, pool: Sequence[Member], max_distinct: int) -> Ensemble:
  val_logits, labels = predictions.stack(pool, 'validation')
  result = selection_lib.greedy_selection(val_logits, labels, max_distinct)
  return Ensemble(pool=tuple(pool), result=result)


def best_single(ensemble: Ensemble) -> Ensemble:
  """The best single model of a pool: greedy selection's first pick (lowest validation NLL)."""
  first = ensemble.result.picks[0]
  result = selection_lib.SelectionResult(
      members=(first,), counts=(1,), picks=(first,), nll_history=(ensemble.result.nll_history[0],))
  return Ensemble(pool=ensemble.pool, result=result)


def selection_stage(ctx: Context, name: str, pool: Sequence[Member], inputs_changed: bool
                    ) -> tuple[Ensemble, bool]:
  """Reuses selection/<name>.json when its pool is the same and no input was retrained."""
  path = os.path.join(ctx.workdir, SELECTION_DIR, f'{name}.json')
  if os.path.exists(path) and not inputs_changed:
    stored = Ensemble.from_json(workdir_lib.read_json(path))
    if stored.pool == tuple(pool):
      return stored, False
  ensemble = select(ctx.predictions, pool, ctx.ensemble_size)
  if ctx.is_main:
    workdir_lib.write_json(path, ensemble.to_json())
  return ensemble, True


def run(ctx: Context, pool_members: Sequence[Member], inputs_changed: bool
        ) -> tuple[Ensemble, bool]:
  """Greedy selection over the random search: (the hyper ensemble, whether it was selected now)."""
  hyper_ens, ran = selection_stage(ctx, HYPER_ENS, pool_members, inputs_changed)
  ctx.log.record('select', ran, members=[m.seed for m in hyper_ens.members],
                 counts=list(hyper_ens.result.counts))
  return hyper_ens, ran
