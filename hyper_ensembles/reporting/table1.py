"""The paper's Table 1 (one architecture): rows of ensembles, columns of metrics over seeds.

Takes, per row, the metrics.json entries of the seeds that finished (a run's metrics.json, or one
ensemble of a hyper-deep pipeline's) and returns the `table.Table` and its JSON twin: every
column is mean ± standard error over seeds (maths.metrics.mean_and_se), the seeds column says how
many finished, and a row with none says "not run". Reads no files: the caller collects the
metrics (hyper_ensembles/reproduction/table1.py), so the table cannot depend on a directory layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from hyper_ensembles.maths.metrics import mean_and_se
from hyper_ensembles.reporting import table as table_lib

NOT_RUN = 'not run'
OOD_PREFIX = 'ood_'
TEMPERED = '_tempered'


@dataclasses.dataclass(frozen=True)
class Column:
  key: str  # the JSON name
  group: str
  label: str
  get: Callable[[dict], float | None]
  scale: float = 1.0
  decimals: int = 4


@dataclasses.dataclass(frozen=True)
class RowResults:
  """One table row: its label and, for each finished seed, (seed, metrics, where it came from)."""

  key: str
  label: str
  seeds: Sequence[int]
  metrics: Sequence[dict]
  sources: Sequence[str]


def _field(set_name: str, key: str) -> Callable[[dict], float | None]:
  def get(metrics: dict) -> float | None:
    value = (metrics.get(set_name) or {}).get(key)
    return float(value) if isinstance(value, int | float) else None
  return get


def _top(key: str) -> Callable[[dict], float | None]:
  def get(metrics: dict) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else None
  return get


def ood_sets(rows: Sequence[RowResults]) -> list[str]:
  """The OOD sets (`ood_<name>` entries of metrics.json) any row has, sorted."""
  return sorted({k for r in rows for m in r.metrics for k, v in m.items()
                 if k.startswith(OOD_PREFIX) and isinstance(v, dict) and not k.endswith(TEMPERED)})


def columns(ood: Sequence[str], eval_set: str = 'test') -> list[Column]:
  """Table 1's columns: validation NLL (what every protocol choice and every selection saw), clean
  NLL / accuracy / ECE, tempered NLL / ECE, shifted NLL / accuracy (`corrupt_mean`), OOD AUROC per
  set (max probability, in-distribution positive), member disagreement, parameters and training
  time."""
  t = eval_set + TEMPERED
  out = [
      Column('validation_nll', 'validation', 'NLL', _field('validation', 'nll')),
      Column('nll', '', 'NLL', _field(eval_set, 'nll')),
      Column('accuracy', '', 'Acc (%)', _field(eval_set, 'accuracy'), 100, 2),
      Column('ece', '', 'ECE', _field(eval_set, 'ece')),
      Column('tempered_nll', 'tempered', 'NLL', _field(t, 'nll')),
      Column('tempered_ece', 'tempered', 'ECE', _field(t, 'ece')),
      Column('shifted_nll', 'shifted', 'NLL', _field('corrupt_mean', 'nll')),
      Column('shifted_accuracy', 'shifted', 'Acc (%)', _field('corrupt_mean', 'accuracy'), 100,
             2),
  ]
  for name in ood:
    short = name[len(OOD_PREFIX):]
    out.append(Column(f'{name}_auroc', f'OOD {short}', 'AUROC (%)',
                      _field(name, 'auroc_max_prob'), 100, 2))
  out += [
      Column('disagreement', '', 'disagreement', _field(eval_set, 'disagreement')),
      Column('num_params', '', 'params (k)', _top('num_params'), 1e-3, 1),
      Column('train_seconds', '', 'train (s)', _top('train_seconds'), 1, 0),
  ]
  return out


def _stats(row: RowResults, cols: Sequence[Column]) -> list[tuple[float, float | None, int]]:
  return [mean_and_se([c.get(m) for m in row.metrics]) for c in cols]


def build_table(rows: Sequence[RowResults], title: str, eval_set: str = 'test'
                ) -> table_lib.Table:
  cols = columns(ood_sets(rows), eval_set)
  body: list[list[table_lib.Cell | str]] = []
  for row in rows:
    if not row.metrics:
      body.append([row.label, '0', table_lib.Cell(text=NOT_RUN),
                   *[table_lib.Cell() for _ in cols[1:]]])
      continue
    cells = [table_lib.stat(*s, decimals=c.decimals, scale=c.scale)
             for c, s in zip(cols, _stats(row, cols))]
    body.append([row.label, str(len(row.metrics)), *cells])
  return table_lib.Table(header=['method', 'seeds', *(c.label for c in cols)],
                         groups=['', '', *(c.group for c in cols)],
                         align='ll' + 'r' * len(cols), rows=body, title=title)


def to_json(rows: Sequence[RowResults], eval_set: str = 'test') -> list[dict[str, Any]]:
  """Every row's numbers: `{key, label, n, seeds, sources, values: {column: {mean, se, n}}}`."""
  cols = columns(ood_sets(rows), eval_set)
  out = []
  for row in rows:
    values = {}
    for col, (mean, se, n) in zip(cols, _stats(row, cols)):
      if n:
        values[col.key] = {'mean': mean, 'se': se, 'n': n}
    out.append({'key': row.key, 'label': row.label, 'n': len(row.metrics),
                'seeds': list(row.seeds), 'sources': list(row.sources), 'values': values})
  return out
