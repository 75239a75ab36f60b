"""Stage `evaluate`: the weighted ensembles on every saved evaluation set, and the final files.

Reads the chosen runs' predictions/<set>.npz and every run's metrics.json (train_seconds); writes
DIR/metrics.json (docs/design.md §9 for the final hyper-deep ensemble, plus `baselines`),
DIR/selection.json (the chosen members of every ensemble) and DIR/predictions/<set>.npz (the final
ensemble's picks, duplicates repeated). Skipped when nothing changed and both files exist.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from absl import logging

from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.hyper_deep.baselines import FixedInit
from hyper_ensembles.hyper_deep.context import Context
from hyper_ensembles.hyper_deep.plan import Member
from hyper_ensembles.hyper_deep.pool import Pool
from hyper_ensembles.hyper_deep.retraining import Retrained
from hyper_ensembles.hyper_deep.selection import (
  BEST_SINGLE,
  DEEP_ENS,
  FIXED_INIT_HYPER_ENS,
  HYPER_DEEP,
  HYPER_DEEP_BEFORE_RETRAIN,
  HYPER_ENS,
  Ensemble,
  best_single,
)
from hyper_ensembles.hyper_deep.stratification import Stratified
from hyper_ensembles.runs import workdir as workdir_lib

SELECTION_FILE = 'selection.json'


@dataclasses.dataclass(frozen=True)
class Chosen:
  """What the stages before `evaluate` produced: the networks and ensembles it scores."""

  pool: Pool
  hyper_ens: Ensemble
  stratified: Stratified  # .ensemble: the hyper-deep ensemble (= hyper_ens when not stratified)
  retrained: Retrained | None
  fixed_init: FixedInit | None
  deep_metrics: dict | None


def _seconds(results: Sequence[dict]) -> float:
  return float(sum(r['train_seconds'] for r in results))


class _Scorer:
  """Metrics of weighted ensembles of pool members on every evaluation set the pool saved."""

  def __init__(self, ctx: Context, pool: Pool):
    self.predictions = ctx.predictions
    self.eval_sets = ctx.predictions.eval_sets(ctx.plan.pool[0].workdir)
    self.per_member = pool.metrics[0]['num_params'] // len(ctx.plan.pool[0].members)

  def weighted(self, members: Sequence[Member], weights: Sequence[float], train_seconds: float
               ) -> dict[str, Any]:
    # The same evaluation path as every run: OOD sets get detection metrics against test and
    # corrupted sets their aggregates.
    out: dict[str, Any] = results_lib.metrics_from_predictions(
        {name: self.predictions.stack(members, name) for name in self.eval_sets}, weights)
    out['num_params'] = int(self.per_member * len(members))
    # The cost of producing the ensemble: every run its candidates came from.
    out['train_seconds'] = train_seconds
    return out

  def ensemble(self, ensemble: Ensemble, train_seconds: float) -> dict[str, Any]:
    return self.weighted(ensemble.members, ensemble.result.weights, train_seconds)


def _results(chosen: Chosen, scorer: _Scorer, ensembles: dict[str, Ensemble]
             ) -> tuple[dict[str, Any], list[Member]]:
  """metrics.json's contents, and the final ensemble's picks (retrained twins when retrained)."""
  search_seconds = _seconds(chosen.pool.metrics)
  baselines = {
      BEST_SINGLE: scorer.ensemble(ensembles[BEST_SINGLE], search_seconds),
      HYPER_ENS: scorer.ensemble(chosen.hyper_ens, search_seconds),
  }
  if chosen.fixed_init is not None:
    baselines[FIXED_INIT_HYPER_ENS] = scorer.ensemble(chosen.fixed_init.ensemble,
                                                      _seconds(chosen.fixed_init.metrics))
  if chosen.deep_metrics is not None:
    baselines[DEEP_ENS] = chosen.deep_metrics
  hyper_deep = chosen.stratified.ensemble
  hyper_deep_seconds = search_seconds + _seconds(chosen.stratified.metrics)
  final_picks = [hyper_deep.pool[i] for i in hyper_deep.result.picks]
  retrained = chosen.retrained
  if retrained is not None:
    # The selection's weights, applied to the retrained twins of the members it chose.
    twin = lambda m: retrained.twins[(m.init_seed, m.seed)]
    results = scorer.weighted([twin(m) for m in hyper_deep.members], hyper_deep.result.weights,
                              hyper_deep_seconds + _seconds(retrained.metrics))
    baselines[HYPER_DEEP_BEFORE_RETRAIN] = scorer.ensemble(hyper_deep, hyper_deep_seconds)
    final_picks = [twin(m) for m in final_picks]
  else:
    results = scorer.ensemble(hyper_deep, hyper_deep_seconds)
  results['retrained_on_train_plus_val'] = retrained is not None
  results['baselines'] = baselines
  return results, final_picks


def _summary(ctx: Context, chosen: Chosen, ensembles: dict[str, Ensemble]) -> dict[str, Any]:
  """selection.json's contents."""
  settings = ctx.settings
  summary = {
      'ensemble_size': settings.ensemble_size,
      'pool_size': settings.pool_size,
      'stratified': settings.stratify,
      'retrained_on_train_plus_val': settings.retrain,
      'search_space': {n: [lo, hi] for n, lo, hi in zip(
          settings.space.names, settings.space.mins, settings.space.maxs)},
      **{name: ensemble.summary() for name, ensemble in ensembles.items()},
  }
  if chosen.retrained is not None:
    summary['retrain_runs'] = [run.workdir for run in chosen.retrained.runs]
    for member in summary[HYPER_DEEP]['members']:
      retrained = chosen.retrained.twins[(member['init_seed'], member['seed'])]
      member['retrained'] = {'run': retrained.run, 'index': retrained.index}
  return summary


def run(ctx: Context, chosen: Chosen, inputs_changed: bool) -> dict[str, Any]:
  """Scores every ensemble and writes DIR's files unless nothing changed; DIR/metrics.json's
  contents."""
  metrics_path = os.path.join(ctx.workdir, workdir_lib.METRICS_FILE)
  selection_path = os.path.join(ctx.workdir, SELECTION_FILE)
  if not inputs_changed and os.path.exists(metrics_path) and os.path.exists(selection_path):
    ctx.log.record('evaluate', False)
    return workdir_lib.read_json(metrics_path)
  scorer = _Scorer(ctx, chosen.pool)
  ensembles = {HYPER_DEEP: chosen.stratified.ensemble, HYPER_ENS: chosen.hyper_ens,
               BEST_SINGLE: best_single(chosen.hyper_ens)}
  if chosen.fixed_init is not None:
    ensembles[FIXED_INIT_HYPER_ENS] = chosen.fixed_init.ensemble
  results, final_picks = _results(chosen, scorer, ensembles)
  summary = _summary(ctx, chosen, ensembles)
  if ctx.is_main:
    # The picks, a member chosen twice appearing twice: their uniform average is the weighted
    # ensemble, so tools that read any run's predictions/ re-evaluate this one correctly too.
    for name in scorer.eval_sets:
      workdir_lib.write_predictions(ctx.workdir, name, *ctx.predictions.stack(final_picks, name))
    workdir_lib.write_json(selection_path, summary)
    workdir_lib.write_json(metrics_path, results)
  ctx.log.record('evaluate', True)
  for name, values in [(HYPER_DEEP, results), *results['baselines'].items()]:
    test = values.get('test')
    if test:
      logging.info('hyper-deep %s: test nll %.4f  accuracy %.4f  ece %.4f', name, test['nll'],
                   test['accuracy'], test['ece'])
  return results
