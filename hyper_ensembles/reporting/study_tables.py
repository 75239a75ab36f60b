"""The results tables of the studies in `scripts/`: the demo, the two comparisons, one pipeline.

Each takes the metrics.json contents of a study's runs (per method and seed) and returns a
`table.Table`: one row per method or ensemble, each metric as mean ± standard error over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hyper_ensembles.maths.metrics import mean_and_se
from hyper_ensembles.reporting.table import Cell, Table, stat_cell

# (split, metric) columns, in order.
DEMO_METRICS = (('validation', 'nll'), ('test', 'nll'), ('test', 'accuracy'), ('test', 'ece'),
                ('test', 'brier'))
COMPARISON_METRICS = (('validation', 'nll'), ('test', 'nll'), ('test', 'accuracy'),
                      ('test', 'ece'))
METRIC_NAMES = {'nll': 'NLL', 'accuracy': 'accuracy', 'ece': 'ECE', 'brier': 'Brier'}
# The ensembles of one hyper-deep pipeline's metrics.json: (row label, key); 'hyper_deep' is the
# pipeline's own result, the others are entries of its `baselines`.
PIPELINE_ENSEMBLES = (('deep ensemble', 'deep_ens'), ('hyper ensemble', 'hyper_ens'),
                      ('hyper-deep ensemble', 'hyper_deep'), ('best single model', 'best_single'),
                      ('fixed-init hyper ensemble', 'fixed_init_hyper_ens'))


def _header(metrics: Sequence[tuple[str, str]]) -> list[str]:
  return [f'{split} {METRIC_NAMES[key]}' for split, key in metrics]


def _stats(runs: Sequence[dict], metrics: Sequence[tuple[str, str]]) -> list[Cell]:
  return [stat_cell([r[split][key] for r in runs]) for split, key in metrics]


def _params(runs: Sequence[dict]) -> str:
  return ', '.join(f'{p:,}' for p in sorted({r['num_params'] for r in runs}))


def demo_table(rows: Mapping[str, Sequence[dict]]) -> Table:
  """`{method: [metrics.json of each seed]}` → one row per method."""
  body = []
  for method, runs in rows.items():
    members = sorted({len(r['test']['member_nll']) for r in runs})
    body.append([method, ', '.join(map(str, members)), _params(runs), *_stats(runs, DEMO_METRICS),
                 f'{np.mean([r["train_seconds"] for r in runs]):.1f}'])
  return Table(header=['method', 'members', 'parameters', *_header(DEMO_METRICS), 'train s/run'],
               rows=body)


def comparison_table(results: Mapping[str, Mapping[str, Mapping[int, dict]]]) -> Table:
  """`{arch: {method: {seed: metrics}}}` → one row per (arch, method)."""
  body = []
  for arch, by_method in results.items():
    for method, by_seed in by_method.items():
      runs = list(by_seed.values())
      body.append([arch, method, *_stats(runs, COMPARISON_METRICS), _params(runs),
                   f'{np.mean([r["train_seconds"] for r in runs]):.0f}'])
  return Table(header=['arch', 'method', *_header(COMPARISON_METRICS), 'parameters',
                       'train s/run'], rows=body)


def pipeline_ensembles(metrics: dict) -> dict[str, dict]:
  """{ensemble key: its metrics} of one hyper-deep pipeline's metrics.json."""
  return {'hyper_deep': metrics, **metrics.get('baselines', {})}


def pipeline_table(per_seed: Sequence[dict], split: str = 'test',
                   ensembles: Sequence[tuple[str, str]] = PIPELINE_ENSEMBLES
                   ) -> tuple[Table, dict]:
  """Hyper-deep pipelines of several seeds (`pipeline_ensembles` of each) → one row per ensemble
  `(label, key)` that every seed has, and the summary `{key: {metric: {mean, se, values},
  'members': [...]}}`."""
  metrics = [(split, key) for key in ('nll', 'accuracy', 'ece')]
  body, summary = [], {}
  for label, key in ensembles:
    if not per_seed or not all(key in r for r in per_seed):
      continue
    runs = [r[key] for r in per_seed]
    row: dict = {}
    for _, metric in metrics:
      values = [float(r[split][metric]) for r in runs]
      mean, se, _ = mean_and_se(values)
      row[metric] = {'mean': mean, 'se': float('nan') if se is None else se, 'values': values}
    row['members'] = [len(r[split]['member_nll']) for r in runs]
    summary[key] = row
    body.append([label, *_stats(runs, metrics), '/'.join(map(str, row['members']))])
  return Table(header=['ensemble', *_header(metrics), 'members'], rows=body), summary
