"""The paper's result tables from finished runs: mean ± standard error over seeds.

Runs are found under directories or glob patterns (a directory with config.json and metrics.json;
the runs inside a hyper-deep pipeline directory are its own business and are not collected, the
pipeline directory itself is). Method, architecture, dataset and seed are read from each run's
config.json.

One table per (dataset, architecture); one row per method and config: runs whose config.json agree
on every key but the ignored ones (the seeds) are the seeds of one row, so two configs of one
method never get averaged together — they become two rows, and the footnotes say which config keys
tell them apart. Each row's footnote gives its config hash, seeds and config.json paths.

Columns (each shown when some row of the table has it): clean (`<set>`: NLL, accuracy, ECE),
tempered (`<set>_tempered`: NLL, ECE and the fitted temperature T), shifted (`corrupt_mean`: NLL,
accuracy, ECE), OOD (`ood_<name>`: AUROC and AUPR of the OOD score, in-distribution positive) and
the parameter count. Reference numbers (a JSON file `{arch: {dataset: {method: {nll, acc, ...}}}}`
with an `_about`) are printed as extra rows below ours where the file has the same (architecture,
dataset, method).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from hyper_ensembles.maths.metrics import mean_and_se
from hyper_ensembles.reporting import table as table_lib
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.runs.workdir import flatten_dict

METHOD_ORDER = ('single', 'deep', 'batch', 'hyper_batch', 'stn', 'hyper_deep')
PIPELINE_METHODS = ('hyper_deep',)
OOD_SCORES = ('max_prob', 'entropy')
# The seeds of one experiment: a hyper-deep run's random-search seed varies with its seed.
DEFAULT_IGNORE_KEYS = ('seed', 'hyper_deep.sampling_seed')


@dataclasses.dataclass(frozen=True)
class Column:
  group: str  # clean, tempered, shifted, OOD <name>, size
  label: str
  get: Callable[[dict], float | None]  # value from one metrics.json (or baseline entry)
  reference: str | None  # key in the reference file
  scale: float  # displayed value = value · scale
  decimals: int
  higher_is_better: bool | None  # None: not a score (no bold)


def _field(set_name: str, key: str) -> Callable[[dict], float | None]:
  def get(metrics: dict) -> float | None:
    value = (metrics.get(set_name) or {}).get(key)
    return float(value) if isinstance(value, int | float) else None
  return get


def _temperature(metrics: dict) -> float | None:
  values = (metrics.get('temperature') or {}).get('values')
  return float(np.mean(values)) if values else None


def _params(metrics: dict) -> float | None:
  value = metrics.get('num_params')
  return float(value) if isinstance(value, int | float) else None


def columns(eval_set: str, ood_sets: list[str], ood_score: str, decimals: int = 3
            ) -> list[Column]:
  """Every column a table may have, in display order; `decimals` for NLL and ECE."""
  t = f'{eval_set}_tempered'
  d = decimals
  out = [
      Column('clean', 'NLL', _field(eval_set, 'nll'), 'nll', 1, d, False),
      Column('clean', 'Acc (%)', _field(eval_set, 'accuracy'), 'acc', 100, 1, True),
      Column('clean', 'ECE', _field(eval_set, 'ece'), 'ece', 1, d, False),
      Column('tempered', 'NLL', _field(t, 'nll'), None, 1, d, False),
      Column('tempered', 'ECE', _field(t, 'ece'), None, 1, d, False),
      Column('tempered', 'T', _temperature, None, 1, 2, None),
      Column('shifted', 'NLL', _field('corrupt_mean', 'nll'), 'cnll', 1, d, False),
      Column('shifted', 'Acc (%)', _field('corrupt_mean', 'accuracy'), 'cacc', 100, 1, True),
      Column('shifted', 'ECE', _field('corrupt_mean', 'ece'), 'cece', 1, d, False),
  ]
  for name in ood_sets:
    short = name[len('ood_'):]
    out += [Column(f'OOD {short}', 'AUROC (%)', _field(name, f'auroc_{ood_score}'), None, 100, 1,
                   True),
            Column(f'OOD {short}', 'AUPR (%)', _field(name, f'aupr_{ood_score}'), None, 100, 1,
                   True)]
  out.append(Column('size', 'Params (M)', _params, 'params_m', 1e-6, 3, None))
  return out


# --------------------------------------------------------------------------------------------------
# Finding and grouping runs.
# --------------------------------------------------------------------------------------------------


def find_runs(paths: list[str]) -> list[str]:
  """Run directories under `paths` (directories, globs or roots), each once, sorted."""
  found: list[str] = []
  for pattern in paths:
    matches = sorted(glob.glob(pattern)) or [pattern]
    for path in matches:
      if not os.path.isdir(path):
        raise FileNotFoundError(f'{path} is not a directory')
      for dirpath, dirnames, filenames in os.walk(path):
        if workdir_lib.CONFIG_FILE in filenames:
          dirnames[:] = []  # a run (or a pipeline) directory: its subdirectories are its own
          if workdir_lib.METRICS_FILE in filenames:
            found.append(os.path.normpath(dirpath))
        dirnames.sort()
  return sorted(set(found))


@dataclasses.dataclass
class Row:
  dataset: str
  arch: str
  method: str
  config_hash: str
  label: str
  runs: list[str] = dataclasses.field(default_factory=list)
  seeds: list = dataclasses.field(default_factory=list)
  metrics: list[dict] = dataclasses.field(default_factory=list)
  config: dict = dataclasses.field(default_factory=dict)


def config_hash(config: dict, ignore: tuple[str, ...]) -> str:
  flat = {k: v for k, v in flatten_dict(config).items() if k not in ignore}
  return hashlib.sha1(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:8]


def group_runs(run_dirs: list[str], ignore: tuple[str, ...], hyper_deep_baselines: bool
               ) -> list[Row]:
  rows: dict[tuple, Row] = {}
  for run in run_dirs:
    config = workdir_lib.read_json(os.path.join(run, workdir_lib.CONFIG_FILE))
    metrics = workdir_lib.read_json(os.path.join(run, workdir_lib.METRICS_FILE))
    digest = config_hash(config, ignore)
    entries = [(config['method'], metrics)]
    if hyper_deep_baselines and config['method'] in PIPELINE_METHODS:
      entries += [(f'{config["method"]}: {name}', values)
                  for name, values in sorted((metrics.get('baselines') or {}).items())]
    for label, values in entries:
      key = (config['dataset'], config['arch'], label, digest)
      row = rows.setdefault(key, Row(config['dataset'], config['arch'], config['method'], digest,
                                     label, config=config))
      row.runs.append(run)
      row.seeds.append(config.get('seed'))
      row.metrics.append(values)

  def order(row: Row):
    base = row.method if row.method in METHOD_ORDER else None
    rank = METHOD_ORDER.index(base) if base else len(METHOD_ORDER)
    return row.dataset, row.arch, rank, row.label, row.config_hash

  return sorted(rows.values(), key=order)


# --------------------------------------------------------------------------------------------------
# Numbers.
# --------------------------------------------------------------------------------------------------


def summarise(row: Row, cols: list[Column]) -> list[tuple[float, float | None, int]]:
  return [mean_and_se([c.get(m) for m in row.metrics]) for c in cols]


def reference_rows(reference: dict, dataset: str, arch: str, methods: list[str]
                   ) -> list[tuple[str, dict]]:
  """[(label, entry)] of the reference file for (arch, dataset and its `<dataset>_*` variants)."""
  by_dataset = reference.get(arch) or {}
  out = []
  for variant in sorted(k for k in by_dataset if k == dataset or k.startswith(f'{dataset}_')):
    for method in methods:
      entry = by_dataset[variant].get(method)
      if entry:
        suffix = '' if variant == dataset else f', {variant[len(dataset) + 1:]}'
        out.append((f'ref. {method} ({entry.get("source", "?")}{suffix})', entry))
  return out


# --------------------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------------------


def _best(stats: list[list[tuple]], cols: list[Column]) -> set[tuple[int, int]]:
  """(row, column) cells with the best mean of their column (among ≥ 2 rows with values)."""
  best = set()
  for j, col in enumerate(cols):
    values = [(stats[i][j][0], i) for i in range(len(stats)) if stats[i][j][2]]
    if col.higher_is_better is None or len(values) < 2:
      continue
    target = max(values)[0] if col.higher_is_better else min(values)[0]
    shown = lambda v: f'{v * col.scale:.{col.decimals}f}'  # noqa: B023 (used at once)
    best |= {(i, j) for v, i in values if shown(v) == shown(target)}
  return best


def build_table(rows: list[Row], cols_all: list[Column], reference: dict, first_note: int
                ) -> tuple[table_lib.Table, list[str]]:
  """One (dataset, arch) table and its footnotes."""
  dataset, arch = rows[0].dataset, rows[0].arch
  stats_all = [summarise(r, cols_all) for r in rows]
  refs = reference_rows(reference, dataset, arch, list(dict.fromkeys(r.label for r in rows)))
  keep = [j for j, c in enumerate(cols_all)
          if any(s[j][2] for s in stats_all) or (refs and c.reference and any(
              c.reference in e for _, e in refs))]
  cols = [cols_all[j] for j in keep]
  stats = [[s[j] for j in keep] for s in stats_all]
  best = _best(stats, cols)

  notes = []
  by_method = defaultdict(list)
  for row in rows:
    by_method[row.label].append(row)
  body: list[list[table_lib.Cell | str]] = []
  for i, row in enumerate(rows):
    number = first_note + i
    seeds = ', '.join(str(s) for s in sorted(row.seeds, key=str))
    paths = ', '.join(os.path.join(os.path.relpath(r), 'config.json') for r in row.runs)
    differs = ''
    twins = [r for r in by_method[row.label] if r is not row]
    if twins:
      mine, other = flatten_dict(row.config), flatten_dict(twins[0].config)
      keys = sorted(k for k in set(mine) | set(other) if mine.get(k) != other.get(k)
                    and k != 'seed')
      differs = f'; differs from config {twins[0].config_hash} in {", ".join(keys[:6])}'
    notes.append(f'[{number}] config {row.config_hash} (seeds {seeds}){differs}: {paths}')
    cells = [dataclasses.replace(table_lib.stat(*stats[i][j], decimals=col.decimals,
                                                scale=col.scale), bold=(i, j) in best)
             for j, col in enumerate(cols)]
    body.append([table_lib.Cell(row.label, note=number), str(len(row.runs)), *cells])
  for label, entry in refs:
    cells = []
    for col in cols:
      value = entry.get(col.reference) if col.reference else None
      # The reference file stores accuracies as fractions and parameters in millions.
      scale = 1.0 if col.reference == 'params_m' else col.scale
      cells.append(table_lib.Cell() if value is None
                   else table_lib.Cell(mean=value, decimals=col.decimals, scale=scale))
    body.append([table_lib.Cell(label, italic=True), table_lib.DASH, *cells])

  table = table_lib.Table(
      header=['method', 'seeds', *(c.label for c in cols)],
      # The parameter count needs no group heading: 'Params (M)' says it.
      groups=['', '', *('' if c.group == 'size' else c.group for c in cols)],
      align='ll' + 'r' * len(cols), rows=body, title=f'{dataset} / {arch}')
  return table, notes


def render(rows: list[Row], reference: dict, fmt: str, eval_set: str, ood_score: str,
           decimals: int = 3) -> str:
  """Every (dataset, arch) table with its footnotes, and the reference file's provenance."""
  tables = defaultdict(list)
  for row in rows:
    tables[(row.dataset, row.arch)].append(row)
  out, note, any_reference = [], 1, False
  for key in sorted(tables):
    group = tables[key]
    table, notes = build_table(group, columns(eval_set, _ood_sets(group), ood_score, decimals),
                               reference, note)
    text = table_lib.render(table, fmt)
    any_reference |= bool(reference_rows(reference, *key, [r.label for r in group]))
    note += len(group)
    if fmt == 'latex':
      out += [text, '% ' + '\n% '.join(notes), '']
    else:
      out += [text, '', *(f'{n}  ' for n in notes), '']
  about = reference.get('_about')
  legend = (f'Mean ± standard error over seeds; metrics of `{eval_set}` (clean), '
            f'`{eval_set}_tempered` (temperature scaling fitted on validation), `corrupt_mean` '
            f'(shifted) and OOD detection by {ood_score} with in-distribution positive. '
            'Bold: best mean of a column.')
  if about and any_reference:
    legend += f' Reference rows: {about}'
  out.append(('% ' if fmt == 'latex' else '') + legend)
  return '\n'.join(out) + '\n'


def _ood_sets(rows: list[Row]) -> list[str]:
  """The OOD sets (`ood_<name>` entries of metrics.json) any of `rows` has."""
  return sorted({k for r in rows for m in r.metrics for k, v in m.items()
                 if k.startswith('ood_') and isinstance(v, dict) and not k.endswith('_tempered')})


def to_json(rows: list[Row], eval_set: str, ood_score: str) -> list[dict]:
  out = []
  for row in rows:
    cols = columns(eval_set, _ood_sets([row]), ood_score)
    values = {}
    for col, (mean, se, n) in zip(cols, summarise(row, cols)):
      if n:
        values[f'{col.group} {col.label}'] = {'mean': mean, 'se': se, 'n': n}
    out.append({'dataset': row.dataset, 'arch': row.arch, 'method': row.label,
                'config_hash': row.config_hash, 'seeds': row.seeds, 'runs': row.runs,
                'values': values})
  return out




def write_tables(paths: list[str], fmt: str = 'markdown', out: str | None = None,
                 reference_file: str | None = None, eval_set: str = 'test',
                 ood_score: str = 'max_prob', ignore_keys: tuple[str, ...] = DEFAULT_IGNORE_KEYS,
                 decimals: int = 3, hyper_deep_baselines: bool = False,
                 json_out: str | None = None) -> list[str]:
  """The tables of the runs under `paths` as `fmt` (markdown, latex or both).

  Written to `<out>.md` / `<out>.tex` when `out` is given, else returned for printing; returns one
  text per format, or the paths written. No runs under `paths` is a FileNotFoundError.
  """
  formats = table_lib.FORMATS if fmt == 'both' else (fmt,)
  for name in formats:
    table_lib.check_format(name)
  if ood_score not in OOD_SCORES:
    raise ValueError(f'unknown OOD score {ood_score!r}; valid: {", ".join(OOD_SCORES)}')
  run_dirs = find_runs(paths)
  if not run_dirs:
    raise FileNotFoundError(f'no runs (config.json + metrics.json) under {", ".join(paths)}')
  rows = group_runs(run_dirs, tuple(ignore_keys), hyper_deep_baselines)
  reference = workdir_lib.read_json(reference_file) if reference_file else {}
  results = []
  for name in formats:
    text = render(rows, reference, name, eval_set, ood_score, decimals)
    if out:
      path = f'{out}.{"tex" if name == "latex" else "md"}'
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      with open(path, 'w') as f:
        f.write(text)
      results.append(path)
    else:
      results.append(text)
  if json_out:
    with open(json_out, 'w') as f:
      json.dump(to_json(rows, eval_set, ood_score), f, indent=1)
  return results
