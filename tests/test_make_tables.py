"""scripts/make_tables.py and scripts/plot_evaluation.py on hand-written workdirs."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import REPO_ROOT


def _script(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, 'scripts',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses look their module up while the script is loading
  spec.loader.exec_module(module)
  return module


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
  make_tables = _script('make_tables')
  out = tmp_path / 'tables'
  assert make_tables.main([str(tmp_path / 'root'), '--format=both', f'--out={out}',
                           f'--json_out={tmp_path / "rows.json"}']) == 0
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
  make_tables = _script('make_tables')
  rows = make_tables.group_runs(make_tables.find_runs([str(tmp_path / 'root')]), ('seed',), False)
  assert sorted(len(r.runs) for r in rows if r.method == 'deep') == [1, 2]
  text = make_tables.render(rows, {}, 'markdown', 'test', 'max_prob')
  assert 'in lr' in text


def test_metric_by_severity_and_plots(runs, tmp_path):
  root = runs[0] / 'root'
  metrics = workdir_lib.read_json(str(root / 'deep_0' / 'metrics.json'))
  by_severity = results_lib.metric_by_severity(metrics, 'nll')
  assert sorted(by_severity) == [0, 1, 2] and len(by_severity[2]) == 2
  assert by_severity[0] == [metrics['test']['nll']]
  plots = _script('plot_evaluation')
  plots.main(['shift', str(root / 'deep_*'), str(root / 'hd'), f'--out={tmp_path / "s.png"}'])
  assert os.path.getsize(tmp_path / 's.png') > 0
  # Reliability diagrams from saved predictions.
  rng = np.random.default_rng(1)
  run = str(root / 'deep_0')
  for name in ('validation', 'test'):
    workdir_lib.write_predictions(run, name, 3 * rng.standard_normal((2, 50, 4)),
                                  rng.integers(0, 4, 50))
  plots.main(['reliability', f'--workdir={run}', '--temperature_scaling=per_member'])
  assert os.path.getsize(os.path.join(run, 'reliability_test.png')) > 0
