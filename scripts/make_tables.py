"""Collects finished runs into the paper's result tables: mean ± standard error over seeds.

  python scripts/make_tables.py RUNS [RUNS ...] [--format=markdown|latex|both] [--out=PREFIX]
      [--reference=docs/reference_results.json] [--set=test] [--ood_score=max_prob|entropy]
      [--ignore_keys=seed,hyper_deep.sampling_seed,...] [--decimals=3] [--hyper_deep_baselines]
      [--json_out=FILE]

RUNS are run directories, glob patterns or root directories searched recursively for runs (a
directory with config.json and metrics.json; the runs inside a hyper-deep pipeline directory are
its own business and are not collected, the pipeline directory itself is). Method, architecture,
dataset and seed are read from each run's config.json.

One table per (dataset, architecture); one row per method and config: runs whose config.json agree
on every key but `--ignore_keys` (default: the seed and the hyper-deep search's seed) are the
seeds of one row, so two configs of one method never get averaged together — they become two rows,
and the footnotes say which config keys tell them apart. Each row's footnote gives its config
hash, seeds and config.json paths.

Columns (each shown when some row of the table has it): clean (`<set>`: NLL, accuracy, ECE),
tempered (`<set>_tempered`: NLL, ECE and the fitted temperature T), shifted (`corrupt_mean`: NLL,
accuracy, ECE), OOD (`ood_<name>`: AUROC and AUPR of the `--ood_score`, in-distribution positive)
and the parameter count. Reference numbers (docs/reference_results.json, a copy of the shared
file; its `_about` gives the sources) are printed as extra rows below ours where the file has the
same (architecture, dataset, method).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import itertools
import json
import os
import sys
from collections import defaultdict
from collections.abc import Callable

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from hyper_ensembles.maths.metrics import mean_and_se  # noqa: E402
from hyper_ensembles.runs.workdir import flatten_dict  # noqa: E402

DEFAULT_REFERENCE = os.path.join(REPO_ROOT, 'docs', 'reference_results.json')
METHOD_ORDER = ('single', 'deep', 'batch', 'hyper_batch', 'stn', 'hyper_deep')
PIPELINE_METHODS = ('hyper_deep',)


@dataclasses.dataclass(frozen=True)
class Column:
  group: str  # clean, tempered, shifted, OOD, size
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
        if 'config.json' in filenames:
          dirnames[:] = []  # a run (or a pipeline) directory: its subdirectories are its own
          if 'metrics.json' in filenames:
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


def _read(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def group_runs(run_dirs: list[str], ignore: tuple[str, ...], hyper_deep_baselines: bool
               ) -> list[Row]:
  rows: dict[tuple, Row] = {}
  for run in run_dirs:
    config, metrics = _read(os.path.join(run, 'config.json')), _read(
        os.path.join(run, 'metrics.json'))
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


def _number(value: float, col: Column) -> str:
  return f'{value * col.scale:.{col.decimals}f}'


def _cell(stat: tuple[float, float | None, int], col: Column, latex: bool) -> str:
  mean, se, n = stat
  if n == 0:
    return '–'
  text = _number(mean, col)
  if se is not None:
    text += (r' $\pm$ ' if latex else ' ± ') + _number(se, col)
  return text


def _best(stats: list[list[tuple]], cols: list[Column]) -> set[tuple[int, int]]:
  """(row, column) cells with the best mean of their column (among ≥ 2 rows with values)."""
  best = set()
  for j, col in enumerate(cols):
    values = [(stats[i][j][0], i) for i in range(len(stats)) if stats[i][j][2]]
    if col.higher_is_better is None or len(values) < 2:
      continue
    target = max(values)[0] if col.higher_is_better else min(values)[0]
    best |= {(i, j) for v, i in values if _number(v, col) == _number(target, col)}
  return best


def _tex(text: str) -> str:
  return text.replace('_', r'\_').replace('%', r'\%')


def render_table(rows: list[Row], cols_all: list[Column], reference: dict, fmt: str,
                 first_note: int) -> tuple[str, list[str]]:
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
  latex = fmt == 'latex'

  notes, labels = [], []
  by_method = defaultdict(list)
  for row in rows:
    by_method[row.label].append(row)
  for k, row in enumerate(rows):
    number = first_note + k
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
    labels.append((row.label, number, len(row.runs)))

  body: list[list[str]] = []
  for i, (label, number, n) in enumerate(labels):
    cells = []
    for j, col in enumerate(cols):
      cell = _cell(stats[i][j], col, latex)
      if (i, j) in best:
        cell = rf'\textbf{{{cell}}}' if latex else f'**{cell}**'
      cells.append(cell)
    name = rf'{_tex(label)}\textsuperscript{{{number}}}' if latex else f'{label} [{number}]'
    body.append([name, str(n), *cells])
  for label, entry in refs:
    cells = []
    for col in cols:
      value = entry.get(col.reference) if col.reference else None
      if value is None:
        cells.append('–')
      else:
        # The reference file stores accuracies as fractions and parameters in millions.
        scale = 1.0 if col.reference == 'params_m' else col.scale
        cells.append(f'{value * scale:.{col.decimals}f}')
    body.append([rf'\textit{{{_tex(label)}}}' if latex else f'*{label}*', '–', *cells])

  groups = [c.group for c in cols]
  title = f'{dataset} / {arch}'
  if latex:
    spans = [rf'\multicolumn{{{len(list(run))}}}{{c}}{{{_tex(group)}}}'
             for group, run in itertools.groupby(groups)]
    lines = [rf'% {title}', r'\begin{tabular}{ll' + 'r' * len(cols) + '}', r'\toprule',
             ' & '.join(['', '', *spans]) + r' \\',
             ' & '.join(['method', 'seeds', *(_tex(c.label) for c in cols)]) + r' \\',
             r'\midrule']
    lines += [' & '.join(r) + r' \\' for r in body]
    lines += [r'\bottomrule', r'\end{tabular}']
    return '\n'.join(lines), notes
  header = ['method', 'seeds', *(f'{g} {c.label}' if g not in ('size',) else c.label
                                 for g, c in zip(groups, cols))]
  lines = [f'### {title}', '', '| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] * 2 + ['--:'] * len(cols)) + '|']
  lines += ['| ' + ' | '.join(r) + ' |' for r in body]
  return '\n'.join(lines), notes


def render(rows: list[Row], reference: dict, fmt: str, eval_set: str, ood_score: str,
           decimals: int = 3) -> str:
  """Every (dataset, arch) table with its footnotes, and the reference file's provenance."""
  tables = defaultdict(list)
  for row in rows:
    tables[(row.dataset, row.arch)].append(row)
  out, note, any_reference = [], 1, False
  for key in sorted(tables):
    group = tables[key]
    ood_sets = sorted({k for r in group for m in r.metrics for k in m
                       if k.startswith('ood_') and isinstance(m[k], dict)
                       and not k.endswith('_tempered')})
    table, notes = render_table(group, columns(eval_set, ood_sets, ood_score, decimals),
                                reference, fmt, note)
    any_reference |= bool(reference_rows(reference, *key, [r.label for r in group]))
    note += len(group)
    if fmt == 'latex':
      out += [table, '% ' + '\n% '.join(notes), '']
    else:
      out += [table, '', *(f'{n}  ' for n in notes), '']
  about = reference.get('_about')
  legend = (f'Mean ± standard error over seeds; metrics of `{eval_set}` (clean), '
            f'`{eval_set}_tempered` (temperature scaling fitted on validation), `corrupt_mean` '
            f'(shifted) and OOD detection by {ood_score} with in-distribution positive. '
            'Bold: best mean of a column.')
  if about and any_reference:
    legend += f' Reference rows: {about}'
  out.append(('% ' if fmt == 'latex' else '') + legend)
  return '\n'.join(out) + '\n'


def to_json(rows: list[Row], eval_set: str, ood_score: str) -> list[dict]:
  out = []
  for row in rows:
    ood_sets = sorted({k for m in row.metrics for k in m if k.startswith('ood_')
                       and isinstance(m[k], dict) and not k.endswith('_tempered')})
    cols = columns(eval_set, ood_sets, ood_score)
    values = {}
    for col, (mean, se, n) in zip(cols, summarise(row, cols)):
      if n:
        values[f'{col.group} {col.label}'] = {'mean': mean, 'se': se, 'n': n}
    out.append({'dataset': row.dataset, 'arch': row.arch, 'method': row.label,
                'config_hash': row.config_hash, 'seeds': row.seeds, 'runs': row.runs,
                'values': values})
  return out


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+', help='run directories, glob patterns or root directories')
  parser.add_argument('--format', choices=('markdown', 'latex', 'both'), default='markdown')
  parser.add_argument('--out', help='write PREFIX.md / PREFIX.tex instead of printing')
  parser.add_argument('--reference', default=DEFAULT_REFERENCE,
                      help='reference numbers JSON ("" for none)')
  parser.add_argument('--set', default='test', help='the clean evaluation set')
  parser.add_argument('--ood_score', choices=('max_prob', 'entropy'), default='max_prob')
  # The seeds of one experiment: a hyper-deep run's random-search seed varies with its seed.
  parser.add_argument('--ignore_keys', default='seed,hyper_deep.sampling_seed',
                      help='comma list of config keys (dotted) that do not split rows')
  parser.add_argument('--decimals', type=int, default=3, help='decimals of NLL and ECE')
  parser.add_argument('--hyper_deep_baselines', action='store_true',
                      help="also a row for each baseline in a hyper-deep metrics.json")
  parser.add_argument('--json_out', help='also write the aggregated numbers as JSON')
  args = parser.parse_args(argv)

  try:
    run_dirs = find_runs(args.runs)
  except FileNotFoundError as e:
    parser.error(str(e))
  if not run_dirs:
    parser.error(f'no runs (config.json + metrics.json) under {", ".join(args.runs)}')
  ignore = tuple(k.strip() for k in args.ignore_keys.split(',') if k.strip())
  rows = group_runs(run_dirs, ignore, args.hyper_deep_baselines)
  reference = _read(args.reference) if args.reference else {}
  formats = ('markdown', 'latex') if args.format == 'both' else (args.format,)
  for fmt in formats:
    text = render(rows, reference, fmt, args.set, args.ood_score, args.decimals)
    if args.out:
      path = f'{args.out}.{"tex" if fmt == "latex" else "md"}'
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      with open(path, 'w') as f:
        f.write(text)
      print(f'wrote {path}')
    else:
      print(text)
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump(to_json(rows, args.set, args.ood_score), f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
