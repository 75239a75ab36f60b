"""hyper_ensembles/reporting/: the table renderer, the result tables and the evaluation plots on
hand-written workdirs, and scripts/make_tables.py / plot_evaluation.py as commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.reporting import evaluation_plots, results_tables, study_tables
from hyper_ensembles.reporting import table as table_lib
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import REPO_ROOT, subprocess_env

REFERENCE = os.path.join(REPO_ROOT, 'docs', 'reference_results.json')


def _write_run(directory, config: dict, metrics: dict) -> str:
  os.makedirs(directory, exist_ok=True)
  workdir_lib.write_json(os.path.join(directory, 'config.json'), config)
  workdir_lib.write_json(os.path.join(directory, 'metrics.json'), metrics)
  return str(directory)


@pytest.fixture
def runs(tmp_path):
  rng = np.random.default_rng(0)
  nll = rng.uniform(0.2, 0.5, size=2)
  acc = rng.uniform(0.8, 0.9, size=2)
  for seed in range(2):
    metrics = {'test': {'nll': nll[seed], 'accuracy': acc[seed], 'ece': 0.01 * seed},
               'num_params': 1000}
    for s in (1, 2):
      for t in ('fog', 'snow'):
        metrics[f'corrupt_{t}_{s}'] = {'nll': nll[seed] * (1 + s), 'accuracy': 0.5, 'ece': 0.1}
    metrics.update(results_lib.corruption_aggregates(metrics))
    _write_run(tmp_path / 'root' / f'deep_{seed}',
               {'method': 'deep', 'arch': 'wrn28_10', 'dataset': 'cifar10', 'seed': seed},
               metrics)
  # A hyper-deep pipeline: only its DIR counts, not the member run inside it.
  pipeline = _write_run(tmp_path / 'root' / 'hd', {'method': 'hyper_deep', 'arch': 'wrn28_10',
                                                   'dataset': 'cifar10', 'seed': 0},
                        {'test': {'nll': 0.1, 'accuracy': 0.95, 'ece': 0.02}})
  _write_run(os.path.join(pipeline, 'pool', 'members_0000_0004'),
             {'method': 'deep', 'arch': 'wrn28_10', 'dataset': 'cifar10', 'seed': 0, 'x': 1},
             {'test': {'nll': 9.0, 'accuracy': 0.1, 'ece': 0.5}})
  return tmp_path, nll, acc


def test_tables_mean_and_standard_error(runs):
  tmp_path, nll, acc = runs
  out = tmp_path / 'tables'
  written = results_tables.write_tables([str(tmp_path / 'root')], 'both', str(out), REFERENCE,
                                        json_out=str(tmp_path / 'rows.json'))
  assert written == [f'{out}.md', f'{out}.tex']
  rows = json.loads((tmp_path / 'rows.json').read_text())
  assert [r['method'] for r in rows] == ['deep', 'hyper_deep']
  deep = rows[0]['values']
  se = lambda x: np.std(x, ddof=1) / np.sqrt(len(x))
  assert deep['clean NLL']['mean'] == pytest.approx(np.mean(nll))
  assert deep['clean NLL']['se'] == pytest.approx(se(nll))
  assert deep['clean Acc (%)']['mean'] == pytest.approx(np.mean(acc))
  assert deep['shifted NLL']['mean'] == pytest.approx(np.mean(nll) * 2.5)
  assert deep['clean NLL']['n'] == 2 and rows[1]['values']['clean NLL']['se'] is None
  markdown = (tmp_path / 'tables.md').read_text()
  assert f'{np.mean(nll):.3f} ± {se(nll):.3f}' in markdown
  assert f'{100 * np.mean(acc):.1f} ± {100 * se(acc):.1f}' in markdown
  assert '*ref. deep (ub_readme)*' in markdown and 'root/deep_0/config.json' in markdown
  assert '9.000' not in markdown  # the pipeline's member run is not a row
  latex = (tmp_path / 'tables.tex').read_text()
  assert r'\begin{tabular}' in latex and r'$\pm$' in latex


def test_configs_that_differ_are_separate_rows(runs):
  tmp_path, _, _ = runs
  _write_run(tmp_path / 'root' / 'deep_lr', {'method': 'deep', 'arch': 'wrn28_10',
                                             'dataset': 'cifar10', 'seed': 0, 'lr': 3},
             {'test': {'nll': 1.0, 'accuracy': 0.5, 'ece': 0.1}})
  rows = results_tables.group_runs(results_tables.find_runs([str(tmp_path / 'root')]), ('seed',),
                                   False)
  assert sorted(len(r.runs) for r in rows if r.method == 'deep') == [1, 2]
  text = results_tables.render(rows, {}, 'markdown', 'test', 'max_prob')
  assert 'in lr' in text


def test_metric_by_severity_and_plots(runs, tmp_path):
  root = runs[0] / 'root'
  metrics = workdir_lib.read_json(str(root / 'deep_0' / 'metrics.json'))
  by_severity = results_lib.metric_by_severity(metrics, 'nll')
  assert sorted(by_severity) == [0, 1, 2] and len(by_severity[2]) == 2
  assert by_severity[0] == [metrics['test']['nll']]
  runs = evaluation_plots.find_runs([str(root / 'deep_*'), str(root / 'hd')])
  assert runs == [str(root / 'deep_0'), str(root / 'deep_1'), str(root / 'hd')]
  evaluation_plots.plot_shift(runs, str(tmp_path / 's.png'), 'method', ['nll', 'ece'], False)
  assert os.path.getsize(tmp_path / 's.png') > 0
  # Reliability diagrams from saved predictions.
  rng = np.random.default_rng(1)
  run = str(root / 'deep_0')
  for name in ('validation', 'test'):
    workdir_lib.write_predictions(run, name, 3 * rng.standard_normal((2, 50, 4)),
                                  rng.integers(0, 4, 50))
  evaluation_plots.plot_reliability(run, 'test', str(tmp_path / 'r.png'), 'per_member', 15)
  assert os.path.getsize(tmp_path / 'r.png') > 0


# ---- the one table renderer ----------------------------------------------------------------------


def _markdown_cells(text: str) -> list[list[str]]:
  """The cells of a Markdown table's body (the oracle: split on `|`)."""
  lines = [line for line in text.splitlines() if line.startswith('|')]
  return [[c.strip() for c in line.strip('|').split('|')] for line in lines[2:]]


def test_stat_cell_is_mean_and_standard_error_of_the_values():
  rng = np.random.default_rng(3)
  values = rng.normal(size=5)
  se = np.std(values, ddof=1) / np.sqrt(values.size)
  table = table_lib.Table(header=['x', 'one', 'none'], rows=[[
      table_lib.stat_cell(values, decimals=3, scale=100), table_lib.stat_cell([values[0], None]),
      table_lib.stat_cell([None])]])
  [[cell, one, none]] = _markdown_cells(table_lib.markdown(table))
  assert cell == f'{100 * np.mean(values):.3f} ± {100 * se:.3f}'
  assert one == f'{values[0]:.4f}' and none == table_lib.DASH
  latex = table_lib.latex(table)
  assert rf'{100 * np.mean(values):.3f} $\pm$ {100 * se:.3f}' in latex


def test_markdown_and_latex_show_the_same_cells():
  cells = [table_lib.Cell('a_b', note=3), table_lib.Cell(mean=0.5, se=0.25, bold=True),
           table_lib.Cell('ref', italic=True)]
  table = table_lib.Table(header=['name', 'value', 'x'], rows=[cells], groups=['', 'g', 'g'],
                          align='lrr', title='t')
  md = table_lib.markdown(table)
  assert md.splitlines()[:4] == ['### t', '', '| name | g value | g x |', '|---|--:|--:|']
  assert _markdown_cells(md) == [['a_b [3]', '**0.5000 ± 0.2500**', '*ref*']]
  tex = table_lib.latex(table).splitlines()
  assert tex[1] == r'\begin{tabular}{lrr}' and r'\multicolumn{2}{c}{g}' in tex[3]
  assert tex[6] == (r'a\_b\textsuperscript{3} & \textbf{0.5000 $\pm$ 0.2500} & \textit{ref} \\')
  with pytest.raises(ValueError, match='2 cells in a table of 3 columns'):
    table_lib.Table(header=['a', 'b', 'c'], rows=[['1', '2']])
  with pytest.raises(ValueError, match='valid: markdown, latex'):
    table_lib.render(table, 'html')


def test_study_tables_average_over_seeds():
  rng = np.random.default_rng(4)
  runs = [{'test': {'nll': rng.uniform(), 'accuracy': rng.uniform(), 'ece': rng.uniform(),
                    'brier': rng.uniform(), 'member_nll': [1.0, 2.0]},
           'validation': {'nll': rng.uniform()}, 'num_params': 1234, 'train_seconds': 2.0}
          for _ in range(3)]
  [[method, members, params, val, *_, seconds]] = _markdown_cells(
      table_lib.markdown(study_tables.demo_table({'deep': runs})))
  nll = [r['validation']['nll'] for r in runs]
  assert (method, members, params, seconds) == ('deep', '2', '1,234', '2.0')
  assert val == f'{np.mean(nll):.4f} ± {np.std(nll, ddof=1) / np.sqrt(3):.4f}'
  per_seed = [study_tables.pipeline_ensembles({**r, 'baselines': {'deep_ens': r}}) for r in runs]
  table, summary = study_tables.pipeline_table(per_seed)
  assert [row[0] for row in _markdown_cells(table_lib.markdown(table))] == [
      'deep ensemble', 'hyper-deep ensemble']
  assert summary['deep_ens']['nll']['values'] == [r['test']['nll'] for r in runs]
  assert summary['deep_ens']['members'] == [2, 2, 2]


# ---- the scripts as commands ---------------------------------------------------------------------


def _script(tmp_path, name: str, *args: str) -> subprocess.CompletedProcess:
  """Runs scripts/<name>.py from a directory outside the repository."""
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'scripts', f'{name}.py'), *args],
                        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                        timeout=300)


def test_make_tables_command_writes_the_tables(runs):
  tmp_path = runs[0]
  proc = _script(tmp_path, 'make_tables', str(tmp_path / 'root'), f'--out={tmp_path / "t"}')
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == f'wrote {tmp_path / "t"}.md'
  assert '*ref. deep (ub_readme)*' in (tmp_path / 't.md').read_text()


@pytest.mark.parametrize('name, args, message', [
    ('make_tables', ['{tmp}/no_such_dir'], 'error (FileNotFoundError): {tmp}/no_such_dir is not'),
    ('make_tables', ['{tmp}'], 'error (FileNotFoundError): no runs (config.json + metrics.json)'),
    ('plot_evaluation', ['shift', '{tmp}/nothing*'], 'error (FileNotFoundError): no runs with'),
    ('plot_hyperparameters', ['--workdir={tmp}'], 'error (FileNotFoundError): no TensorBoard'),
])
def test_script_input_errors_are_one_line(tmp_path, name, args, message):
  proc = _script(tmp_path, name, *(a.format(tmp=tmp_path) for a in args))
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
  assert proc.stderr.startswith(message.format(tmp=tmp_path)), proc.stderr
