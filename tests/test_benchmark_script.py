"""scripts/benchmark.py at a few-second size: it runs every method, and its report is consistent.

Oracles: XLA's own cost analysis of each compiled step for the script's closed-form FLOP counts,
and the script's definitions for its derived columns (speeds over the reference, costs over the
single model, the issue's ratios and the targets' verdicts), recomputed here from the raw rates.
No speed is asserted: timings are for the benchmark's own runs (README, Speed).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, subprocess_env

METHODS = ('single', 'deep', 'batch', 'hyper_batch')


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  out = tmp_path_factory.mktemp('benchmark') / 'benchmark.json'
  cmd = [sys.executable, os.path.join(REPO_ROOT, 'scripts', 'benchmark.py'), '--archs=mlp',
         f'--methods={",".join(METHODS)}', '--rounds=2', '--block_seconds=0.02',
         '--warmup_steps=1', f'--out={out}']
  run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600,
                       cwd=REPO_ROOT)
  assert run.returncode == 0, run.stderr[-3000:]
  return json.loads(out.read_text()), run.stdout


def _rows(result):
  return {row['label']: row for row in result['models']}


def test_every_method_is_timed_and_trained(report):
  result, stdout = report
  rows = _rows(result)
  assert {row['method'] for row in rows.values()} == set(METHODS)
  assert sum(row['reference'] for row in rows.values()) == 1
  for label, row in rows.items():
    assert row['steps_per_second'] > 0 and len(row['block_seconds']) == 2, label
    assert math.isfinite(row['final_loss']), label
    assert row['num_members'] == (1 if row['method'] == 'single' else 4), label
    assert label in stdout


def test_closed_form_flops_match_xla_cost_analysis(report):
  # XLA also counts elementwise work (activations, optimiser, losses): a few percent more.
  rows = _rows(report[0])
  for label, row in rows.items():
    assert row['flops_analytic'] <= row['flops_xla'] <= 1.06 * row['flops_analytic'], label
  # Two weight paths: the hyper-batch step does twice the batch ensemble's matmul work.
  assert rows['mlp hyper_batch']['flops_analytic'] == 2 * rows['mlp batch']['flops_analytic']


def test_derived_columns_follow_from_the_rates(report):
  result, _ = report
  rows = _rows(result)
  ref = next(r for r in rows.values() if r['reference'])
  for label, row in rows.items():
    # The single model at the same unique batch (the reference is its own single model).
    single = next(r for r in rows.values() if r['method'] == 'single'
                  and r['batch_size'] == row['batch_size'])
    assert row['x_reference'] == pytest.approx(row['steps_per_second'] / ref['steps_per_second'])
    assert row['cost_x_single'] == pytest.approx(
        single['steps_per_second'] / row['steps_per_second']), label
    assert row['gflops_per_second'] == pytest.approx(
        row['flops'] * row['steps_per_second'] / 1e9)
  ratios = {r['ratio']: r for r in result['ratios']}
  expected = {
      'single b512 share of the matmul rate':
          ref['gflops_per_second'] / result['matmul']['gflops_per_second'],
      'batch ensemble step / single step (same unique batch)':
          rows['mlp single']['steps_per_second'] / rows['mlp batch']['steps_per_second'],
      'hyper-batch step / batch step':
          rows['mlp batch']['steps_per_second'] / rows['mlp hyper_batch']['steps_per_second'],
      'vectorised deep ensemble speed-up over members in turn':
          4 * rows['mlp deep']['steps_per_second'] / rows['mlp single']['steps_per_second'],
  }
  assert set(ratios) == set(expected)
  for name, value in expected.items():
    assert ratios[name]['value'] == pytest.approx(value), name
  for verdict in result['ratios'] + result['targets']:
    higher = verdict.get('better', 'higher') == 'higher'
    assert verdict['met'] == (verdict['value'] >= verdict['bound'] if higher
                              else verdict['value'] <= verdict['bound']), verdict
