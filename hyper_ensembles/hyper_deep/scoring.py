"""Stage `evaluate`: the weighted ensembles on every saved evaluation set, and the final files.

Reads the chosen runs' predictions/<set>.npz and every run's metrics.json (train_seconds); writes
DIR/metrics.json (docs/design.md §9 for the final hyper-deep ensemble, plus `baselines`),
DIR/selection.json (the chosen members of every ensemble) and DIR/predictions/<set>.npz (the final
ensemble's picks, duplicates repeated). Skipped when nothing changed and both files exist.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from absl import logging

from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.hyper_deep.plan import Member
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
from hyper_ensembles.runs import workdir as workdir_lib

if TYPE_CHECKING:
  from hyper_ensembles.hyper_deep.context import Context

SELECTION_FILE = 'selection.json'


def _seconds(results: Sequence[dict]) -> float:
  return float(sum(r['train_seconds'] for r in results))


class _Scorer:
  """Metrics of weighted ensembles of pool members on every evaluation set the pool saved."""

  def __init__(self, ctx: Context):
    self.predictions = ctx.predictions
    self.eval_sets = ctx.predictions.eval_sets(ctx.plan.pool[0].workdir)
    self.per_member = ctx.pool_metrics[0]['num_params'] // len(ctx.plan.pool[0].members)

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


def _results(ctx: Context, scorer: _Scorer, ensembles: dict[str, Ensemble]
             ) -> tuple[dict[str, Any], list[Member]]:
  """metrics.json's contents, and the final ensemble's picks (retrained twins when retrained)."""
  search_seconds = _seconds(ctx.pool_metrics)
  baselines = {
      BEST_SINGLE: scorer.ensemble(ensembles[BEST_SINGLE], search_seconds),
      HYPER_ENS: scorer.ensemble(ctx.hyper_ens, search_seconds),
  }
  if ctx.fixed_ens is not None:
    baselines[FIXED_INIT_HYPER_ENS] = scorer.ensemble(ctx.fixed_ens, _seconds(ctx.fixed_metrics))
  if ctx.deep_metrics is not None:
    baselines[DEEP_ENS] = ctx.deep_metrics
  hyper_deep = ctx.hyper_deep
  hyper_deep_seconds = search_seconds + _seconds(ctx.strat_metrics)
  final_picks = [hyper_deep.pool[i] for i in hyper_deep.result.picks]
  if ctx.settings.retrain:
    # The selection's weights, applied to the retrained twins of the members it chose.
    twin = lambda m: ctx.twins[(m.init_seed, m.seed)]
    results = scorer.weighted([twin(m) for m in hyper_deep.members], hyper_deep.result.weights,
                              hyper_deep_seconds + _seconds(ctx.retrain_metrics))
    baselines[HYPER_DEEP_BEFORE_RETRAIN] = scorer.ensemble(hyper_deep, hyper_deep_seconds)
    final_picks = [twin(m) for m in final_picks]
  else:
    results = scorer.ensemble(hyper_deep, hyper_deep_seconds)
  results['retrained_on_train_plus_val'] = ctx.settings.retrain
  results['baselines'] = baselines
  return results, final_picks


def _summary(ctx: Context, ensembles: dict[str, Ensemble]) -> dict[str, Any]:
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
  if settings.retrain:
    summary['retrain_runs'] = [run.workdir for run in ctx.retrain_plan]
    for member in summary[HYPER_DEEP]['members']:
      retrained = ctx.twins[(member['init_seed'], member['seed'])]
      member['retrained'] = {'run': retrained.run, 'index': retrained.index}
  return summary


def run(ctx: Context) -> None:
  metrics_path = os.path.join(ctx.workdir, workdir_lib.METRICS_FILE)
  selection_path = os.path.join(ctx.workdir, SELECTION_FILE)
  if not ctx.changed and os.path.exists(metrics_path) and os.path.exists(selection_path):
    ctx.log.record('evaluate', False)
    ctx.metrics = workdir_lib.read_json(metrics_path)
    return
  scorer = _Scorer(ctx)
  ensembles = {HYPER_DEEP: ctx.hyper_deep, HYPER_ENS: ctx.hyper_ens,
               BEST_SINGLE: best_single(ctx.hyper_ens)}
  if ctx.fixed_ens is not None:
    ensembles[FIXED_INIT_HYPER_ENS] = ctx.fixed_ens
  results, final_picks = _results(ctx, scorer, ensembles)
  summary = _summary(ctx, ensembles)
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
  ctx.metrics = results
