"""Tests for step 4 of the hyper-deep pipeline: retraining the chosen members on train ∪ validation.

Covers the data option it relies on (`config.data.train_on_validation`, data/registry.py), how the
chosen members are grouped into retraining runs, and the pipeline with
`hyper_deep.retrain_on_train_plus_val` in smoke size on the embedded digits (κ = 3, K = 2, no
fixed-init or deep baselines), run three times: stopped after the retrain stage, completed, re-run.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from configs import default
from hyper_ensembles import hyper_deep, train
from hyper_ensembles.data.registry import load_dataset
from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.maths import metrics as metrics_lib
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import checkpoint_params, stage_actions

K = 2


def _config():
  config = default.get_config('method=hyper_deep,smoke')
  config.num_members = K
  config.hyper_deep.pool_size = 3
  config.hyper_deep.chunk_size = 3
  config.hyper_deep.fixed_init_baseline = False
  config.hyper_deep.deep_baseline = False
  config.hyper_deep.retrain_on_train_plus_val = True
  return config






@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('hyper_deep_retrain'))
  config = _config()
  out = {'workdir': workdir, 'config': config}
  assert hyper_deep.run_pipeline(config, workdir, until='retrain') == {}
  out['until_retrain'] = hyper_deep.read_stage_log(workdir)
  out['files_until_retrain'] = sorted(os.listdir(workdir))
  out['metrics'] = hyper_deep.run_pipeline(config, workdir)
  n = len(out['until_retrain'])
  out['full'] = hyper_deep.read_stage_log(workdir)[n:]
  out['rerun_metrics'] = hyper_deep.run_pipeline(config, workdir)
  out['rerun'] = hyper_deep.read_stage_log(workdir)[n + len(out['full']):]
  out['selection'] = workdir_lib.read_json(os.path.join(workdir, hyper_deep.SELECTION_FILE))
  return out


# ---- the data option (no training) ---------------------------------------------------------------


def test_train_on_validation_appends_validation_to_train():
  config = default.get_config('smoke')
  held_out = load_dataset('digits', config.data)
  config.data.train_on_validation = True
  merged = load_dataset('digits', config.data)
  n_train, n_val = len(held_out.train), len(held_out.validation)
  assert n_val > 0 and len(merged.train) == n_train + n_val
  # Train first, then validation, in their own orders; validation, test and stats untouched.
  np.testing.assert_array_equal(merged.train.images[:n_train], held_out.train.images)
  np.testing.assert_array_equal(merged.train.images[n_train:], held_out.validation.images)
  np.testing.assert_array_equal(merged.train.labels,
                                np.concatenate([held_out.train.labels, held_out.validation.labels]))
  for split in ('validation', 'test'):
    np.testing.assert_array_equal(getattr(merged, split).images, getattr(held_out, split).images)
    np.testing.assert_array_equal(getattr(merged, split).labels, getattr(held_out, split).labels)
  assert merged.info == held_out.info


# ---- grouping the chosen members into runs (no training) -----------------------------------------


def test_retrain_runs_group_consecutive_seeds():
  member = lambda seed, l2, init_seed=-1: hyper_deep.Member(
      run=f'pool/run_{seed}', index=seed % 3, seed=seed, init_seed=init_seed,
      hparams={'dropout': 0.1, 'l2': l2})
  chosen = [member(5, 3.0), member(0, 1.0), member(1, 2.0), member(0, 1.0), member(2, 4.0),
            member(6, 5.0), member(3, 6.0, init_seed=0)]
  runs, twins = hyper_deep.retrain_runs(chosen, chunk_size=2)
  assert [r.workdir for r in runs] == [
      'retrain/seeds_0000_0002', 'retrain/seeds_0002_0003', 'retrain/seeds_0005_0007',
      'retrain/seeds_0003_0004_init_0000']
  first = runs[0].overrides
  assert first['seed'] == 0 and first['num_members'] == 2 and first['init_seed'] == -1
  assert first['data.train_on_validation'] is True
  assert first['member_hparams.l2'] == [1.0, 2.0]
  assert runs[3].overrides['init_seed'] == 0
  # Every distinct member (the duplicate once) has a twin: same seed and setting, new place.
  assert len(twins) == 6
  for m in chosen:
    twin = twins[(m.init_seed, m.seed)]
    assert (twin.seed, twin.init_seed, twin.hparams) == (m.seed, m.init_seed, m.hparams)
    run = next(r for r in runs if r.workdir == twin.run)
    assert run.members[twin.index] == twin
    assert run.overrides['seed'] + twin.index == twin.seed
  with pytest.raises(ValueError, match='share seed'):
    hyper_deep.retrain_runs([member(0, 1.0), member(0, 2.0)], chunk_size=2)


# ---- the pipeline end to end ---------------------------------------------------------------------


def test_pipeline_completes_with_retraining(pipeline):
  assert stage_actions(pipeline['until_retrain']) == {
      'pool': 'ran', 'select': 'ran', 'stratify': 'ran', 'retrain': 'ran'}
  assert 'metrics.json' not in pipeline['files_until_retrain']
  full = stage_actions(pipeline['full'])
  assert full['retrain'] == 'skipped' and full['evaluate'] == 'ran'
  assert all(not e.get('trained') for e in pipeline['full'])
  metrics = pipeline['metrics']
  assert metrics['retrained_on_train_plus_val'] is True
  assert set(metrics['baselines']) == {'best_single', 'hyper_ens', 'hyper_deep_before_retrain'}
  keys = {'nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy', 'disagreement',
          'avg_kl', 'member_nll', 'member_accuracy'}
  for values in [metrics, *metrics['baselines'].values()]:
    assert keys <= set(values['validation']) and keys <= set(values['test'])
  before = metrics['baselines']['hyper_deep_before_retrain']
  assert metrics['num_params'] == before['num_params']
  assert metrics['train_seconds'] > before['train_seconds']
  # Different networks (trained on other data), so different predictions.
  assert metrics['test']['nll'] != before['test']['nll']


def test_retrained_members_have_the_selected_seeds_and_settings(pipeline):
  workdir, summary = pipeline['workdir'], pipeline['selection']
  assert summary['retrained_on_train_plus_val'] is True
  chosen = summary['hyper_deep']['members']
  runs = summary['retrain_runs']
  assert runs and all(r.startswith('retrain/seeds_') for r in runs)
  for m in chosen:
    retrained = m['retrained']
    assert retrained['run'] in runs
    cfg = workdir_lib.read_json(os.path.join(workdir, retrained['run'], workdir_lib.CONFIG_FILE))
    assert cfg['data']['train_on_validation'] is True
    assert cfg['method'] == 'deep' and cfg['init_seed'] == m['init_seed'] == -1
    assert cfg['seed'] + retrained['index'] == m['seed']
    for name, value in m['hparams'].items():
      assert cfg['member_hparams'][name][retrained['index']] == pytest.approx(value)
    # The original was trained on train alone.
    original = workdir_lib.read_json(os.path.join(workdir, m['run'], workdir_lib.CONFIG_FILE))
    assert original['data']['train_on_validation'] is False


def test_final_metrics_come_from_the_retrained_members(pipeline):
  workdir, metrics, summary = pipeline['workdir'], pipeline['metrics'], pipeline['selection']
  chosen = summary['hyper_deep']['members']
  weights = [m['weight'] for m in chosen]
  predictions = {}
  for name in ('validation', 'test'):
    logits = []
    for m in chosen:
      run_logits, labels = workdir_lib.read_predictions(
          os.path.join(workdir, m['retrained']['run']), name)
      logits.append(run_logits[m['retrained']['index']])
    predictions[name] = (np.stack(logits), labels)
  expected = results_lib.metrics_from_predictions(predictions, weights)
  for name in ('validation', 'test'):
    assert metrics[name]['nll'] == pytest.approx(expected[name]['nll'], rel=1e-6)
  # Selection stayed on the held-out predictions of the originals.
  before = metrics['baselines']['hyper_deep_before_retrain']
  assert before['validation']['nll'] == pytest.approx(summary['hyper_deep']['validation_nll'],
                                                      rel=1e-5)
  # DIR/predictions: the retrained picks, whose plain average is the final ensemble.
  logits, labels = workdir_lib.read_predictions(workdir, 'test')
  assert logits.shape[0] == len(summary['hyper_deep']['picks'])
  assert metrics_lib.compute_metrics(logits, labels)['nll'] == pytest.approx(
      metrics['test']['nll'], rel=1e-6)


def test_rerun_skips_retraining(pipeline):
  assert set(stage_actions(pipeline['rerun']).values()) == {'skipped'}
  assert pipeline['rerun_metrics'] == pipeline['metrics']


def test_retrained_member_equals_single_model_on_train_plus_validation(pipeline, tmp_path):
  """A retrained member is the single model with its seed and setting, trained on train ∪ val."""
  workdir, m = pipeline['workdir'], pipeline['selection']['hyper_deep']['members'][0]
  single = default.get_config('method=single,smoke')
  single.seed = m['seed']
  single.data.train_on_validation = True
  for name, value in m['hparams'].items():
    single.hparams[name] = value
  train.train_and_evaluate(single, str(tmp_path))
  alone = checkpoint_params(str(tmp_path))
  retrained = checkpoint_params(os.path.join(workdir, m['retrained']['run']))
  original = checkpoint_params(os.path.join(workdir, m['run']))
  i, j = m['retrained']['index'], m['index']
  for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(retrained), strict=True):
    np.testing.assert_allclose(a[0], b[i], rtol=1e-4, atol=1e-5)
  # ... and not the original network: the data differ.
  assert not np.allclose(retrained['hidden_0']['kernel'][i], original['hidden_0']['kernel'][j])
