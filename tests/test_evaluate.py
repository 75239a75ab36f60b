"""`python -m hyper_ensembles.evaluate`: metrics.json recomputed from predictions or checkpoint."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hyper_ensembles import evaluate, train
from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import REPO_ROOT, smoke_config, subprocess_env


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A finished deep smoke run (private: the tests below rewrite its files)."""
  workdir = str(tmp_path_factory.mktemp('evaluate_run'))
  metrics = train.train_and_evaluate(smoke_config('deep', 'mlp'), workdir)
  return workdir, metrics


def _copy(trained, tmp_path) -> str:
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained[0], workdir)
  return workdir


def _without_record(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if k != evaluate.RECORD_KEY}


def _assert_close(a, b, rel=1e-9):
  """Nested dicts / lists of numbers equal up to `rel` (strings exactly)."""
  if isinstance(a, dict):
    assert set(a) == set(b)
    for key in a:
      _assert_close(a[key], b[key], rel)
  elif isinstance(a, str):
    assert a == b
  else:
    assert a == pytest.approx(b, rel=rel)


def test_training_writes_tempered_metrics(trained):
  _, metrics = trained
  assert metrics['temperature']['mode'] == 'ensemble'
  assert len(metrics['temperature']['values']) == 3
  for name in ('validation', 'test'):
    assert set(metrics[f'{name}_tempered']) == set(metrics[name])
  assert metrics['validation_tempered']['nll'] <= metrics['validation']['nll'] + 1e-12


def test_reproduces_training_metrics_from_predictions(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  os.remove(os.path.join(workdir, 'metrics.json'))
  result = evaluate.evaluate_workdir(workdir)
  # num_params and train_seconds come back from the checkpoint.
  _assert_close(_without_record(result), trained[1])
  assert workdir_lib.read_json(os.path.join(workdir, 'metrics.json')) == result
  assert not glob.glob(os.path.join(workdir, 'metrics.json.bak-*'))


def test_missing_set_is_predicted_from_the_checkpoint(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  saved = workdir_lib.read_predictions(workdir, 'test')
  os.remove(os.path.join(workdir, 'predictions', 'test.npz'))
  result = evaluate.evaluate_workdir(workdir, sets=['te*'], temperature_scaling='per_member')
  assert result['evaluate']['from_checkpoint'] == ['test']
  logits, labels = workdir_lib.read_predictions(workdir, 'test')
  np.testing.assert_allclose(logits, saved[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(labels, saved[1])
  _assert_close(result['test'], trained[1]['test'], rel=1e-4)
  assert result['temperature']['mode'] == 'per_member'
  # The previous file is kept beside the new one.
  (backup,) = glob.glob(os.path.join(workdir, 'metrics.json.bak-*'))
  assert workdir_lib.read_json(backup) == trained[1]


def test_unknown_set_and_bad_override_name_the_choices(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  with pytest.raises(ValueError, match=r"\['bogus'\].*test, validation"):
    evaluate.evaluate_workdir(workdir, sets=['bogus'])
  with pytest.raises(ValueError, match='corruptions'):
    evaluate.evaluate_workdir(workdir, sets=['test'], data_overrides={'bogus': 1})
  with pytest.raises(ValueError, match='split'):
    evaluate.parse_override('data.split_seed=3')
  assert evaluate.parse_override('data.corruption_severities=[1, 2]') == (
      'corruption_severities', (1, 2))
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))
  with pytest.raises(FileNotFoundError, match='checkpoints'):
    evaluate.evaluate_workdir(workdir, sets=['bogus'])


def test_pipeline_directory_from_saved_predictions(tmp_path):
  """A hyper-deep DIR: duplicated picks are merged back into weights; no checkpoint is needed."""
  rng = np.random.default_rng(0)
  workdir = str(tmp_path)
  config = smoke_config('hyper_deep')
  workdir_lib.prepare_workdir(workdir, config)
  distinct = {n: (rng.standard_normal((2, 40, 10)).astype(np.float32), rng.integers(0, 10, 40))
              for n in ('validation', 'test')}
  for name, (logits, labels) in distinct.items():
    workdir_lib.write_predictions(workdir, name, logits[[0, 1, 1]], labels)
  workdir_lib.write_json(os.path.join(workdir, 'metrics.json'),
                         {'num_params': 7, 'train_seconds': 1.0, 'baselines': {'x': 1}})
  result = evaluate.evaluate_workdir(workdir)
  expected = results_lib.metrics_from_predictions(distinct, [1.0, 2.0])
  _assert_close(result['test'], expected['test'])
  _assert_close(result['test_tempered'], expected['test_tempered'])
  assert result['baselines'] == {'x': 1} and result['num_params'] == 7
  with pytest.raises(ValueError, match='pipeline'):
    evaluate.evaluate_workdir(workdir, sets=['corrupt_fog_1'])


def test_command_line(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  cmd = [sys.executable, '-m', 'hyper_ensembles.evaluate', '--temperature_scaling=none']
  proc = subprocess.run([*cmd, f'--workdir={workdir}'], cwd=REPO_ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  metrics = workdir_lib.read_json(os.path.join(workdir, 'metrics.json'))
  assert 'test_tempered' not in metrics and 'temperature' not in metrics
  _assert_close(metrics['test'], trained[1]['test'])
  missing = tmp_path / 'nope'
  proc = subprocess.run([*cmd, f'--workdir={missing}'], cwd=REPO_ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error (FileNotFoundError)') and str(missing) in last
  assert 'Traceback' not in proc.stderr
