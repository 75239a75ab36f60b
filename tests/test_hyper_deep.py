"""Tests for the hyper-deep ensemble pipeline (hyper_ensembles/hyper_deep/) and scripts/sweep.py.

The pipeline runs once per module in smoke size on the embedded digits (κ = 3 settings, K = 2,
12 steps per run), in three invocations: interrupted after the pool, completed, and re-run; the
tests then read its artifacts. Equivalence of a vectorised pool member and the single model is
checked on the parameters in the checkpoints.
"""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from configs import default
from hyper_ensembles import hyper_deep, train
from hyper_ensembles.data.registry import load_dataset
from hyper_ensembles.maths import metrics as metrics_lib
from hyper_ensembles.methods.registry import create_method
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import checkpoint_params, stage_actions, subprocess_env

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CONFIG_ARG = 'method=hyper_deep,smoke'


def _config(**hd):
  config = default.get_config(CONFIG_ARG)
  config.num_members = 2  # K
  config.hyper_deep.pool_size = 3
  config.hyper_deep.chunk_size = 3
  config.hyper_deep.deep_baseline = False  # method=deep itself; saves a run here
  for key, value in hd.items():
    config.hyper_deep[key] = value
  return config


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
  """Runs the pipeline: stopped after the pool, then completed, then re-run; records each."""
  workdir = str(tmp_path_factory.mktemp('hyper_deep'))
  config = _config()
  out = {'workdir': workdir, 'config': config}
  assert hyper_deep.run_pipeline(config, workdir, until='pool') == {}
  out['after_pool'] = hyper_deep.read_stage_log(workdir)
  out['files_after_pool'] = sorted(os.listdir(workdir))
  out['metrics'] = hyper_deep.run_pipeline(config, workdir)
  out['after_full'] = hyper_deep.read_stage_log(workdir)[len(out['after_pool']):]
  metrics_path = os.path.join(workdir, workdir_lib.METRICS_FILE)
  out['mtime'] = os.path.getmtime(metrics_path)
  out['rerun_metrics'] = hyper_deep.run_pipeline(config, workdir)
  n = len(out['after_pool']) + len(out['after_full'])
  out['after_rerun'] = hyper_deep.read_stage_log(workdir)[n:]
  out['rerun_mtime'] = os.path.getmtime(metrics_path)
  return out


# ---- config, plan and per-member hyperparameters (no training) -----------------------------------


def test_member_hparams_length_must_match_num_members():
  config = default.get_config('method=deep,smoke')
  config.member_hparams.l2 = (0.1, 1.0)  # num_members is 3
  dataset = load_dataset(config.dataset, config.data)
  with pytest.raises(ValueError, match=r'member_hparams.l2 has 2 values .* 3 members'):
    create_method(config, dataset.info, dataset.num_train)
  config.member_hparams.l2 = (0.1, 1.0, 10.0)
  method = create_method(config, dataset.info, dataset.num_train)
  np.testing.assert_allclose(method.initial_hparams()['l2'], [0.1, 1.0, 10.0], rtol=1e-6)
  np.testing.assert_allclose(method.initial_hparams()['dropout'], [0.05] * 3, rtol=1e-6)


def test_plan_seeds_settings_and_chunks(tmp_path):
  config = _config(pool_size=5, chunk_size=2, deep_baseline=True)
  settings, plan = hyper_deep.plan_pipeline(config, str(tmp_path))
  # The default setting first; the rest inside the search space; label smoothing untouched.
  assert plan.settings[0] == {'dropout': 0.05, 'l2': 1.0, 'label_smoothing': 0.0}
  for s in plan.settings[1:]:
    assert 1e-3 <= s['l2'] <= 1e3 and 1e-3 <= s['dropout'] <= 0.9
    assert s['label_smoothing'] == 0.0
  assert len({s['l2'] for s in plan.settings}) == 5
  assert [r.workdir for r in plan.pool] == [
      'pool/members_0000_0002', 'pool/members_0002_0004', 'pool/members_0004_0005']
  pool = [m for r in plan.pool for m in r.members]
  assert [m.seed for m in pool] == list(range(5))
  assert [r.overrides['seed'] for r in plan.pool] == [0, 2, 4]
  # Fixed-init pool: the same settings and seeds, one shared init.
  fixed = [m for r in plan.fixed_init for m in r.members]
  assert [m.hparams for m in fixed] == [m.hparams for m in pool]
  assert {m.init_seed for m in fixed} == {0}
  assert [m.seed for m in plan.deep_baseline.members] == [0, 1]
  # Stratification seeds: K − 1 = 1 new per setting, never a pool seed.
  extra = hyper_deep.stratify_runs(config, settings, plan, [1, 4])
  seeds = [m.seed for i in (1, 4) for r in extra[i] for m in r.members]
  assert seeds == [5 + 1, 5 + 4] and not set(seeds) & set(range(5))
  # Planning again reads the stored plan instead of re-drawing it.
  assert hyper_deep.plan_pipeline(config, str(tmp_path))[1] == plan


def test_config_errors(tmp_path):
  config = _config(retrain_on_train_plus_val=True)
  config.data.train_on_validation = True  # selection would score non-held-out predictions
  with pytest.raises(ValueError, match='held out'):
    hyper_deep.run_pipeline(config, str(tmp_path))
  config = _config()
  config.hyper_deep.search_space.l2 = (1e-3, 1e3)
  with config.hyper_deep.search_space.unlocked():
    config.hyper_deep.search_space.momentum = (0.1, 0.9)
  with pytest.raises(ValueError, match='momentum'):
    hyper_deep.run_pipeline(config, str(tmp_path))


def test_sweep_command_lines_give_the_pipelines_run_configs(tmp_path):
  config = _config(chunk_size=2, deep_baseline=True)
  workdir = str(tmp_path)
  base_args = [f'--config={os.path.join(REPO, "configs", "default.py")}:{CONFIG_ARG}',
               '--config.num_members=2', '--config.hyper_deep.pool_size=3',
               '--config.hyper_deep.chunk_size=2', '--config.hyper_deep.deep_baseline=true']
  # The script plans the pipeline from its command line and prints one command per run.
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'scripts', 'sweep.py'), *base_args,
       f'--workdir={workdir}', '--print'], cwd=tmp_path, env=subprocess_env(),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  _, plan = hyper_deep.plan_pipeline(config, workdir)
  entries = workdir_lib.read_json(os.path.join(workdir, hyper_deep.SWEEP_FILE))
  assert entries == plan.sweep_entries()
  assert [e['stage'] for e in entries] == ['pool'] * 2 + ['fixed_init'] * 2 + ['deep_baseline']
  runs = [*plan.pool, *plan.fixed_init, plan.deep_baseline]
  for line, run in zip(lines, runs, strict=True):
    argv = shlex.split(line)
    assert argv[:3] == ['python', '-m', 'hyper_ensembles.main']
    assert argv[-1] == f'--workdir={os.path.join(workdir, run.workdir)}'
    # Parse the command's flags exactly as main.py would.
    cli = ['main', *argv[3:-1]]
    flag_values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file('config', None, '', flag_values=flag_values,
                                             lock_config=True, sys_argv=cli)
    flag_values(cli)
    assert (workdir_lib.config_to_dict(holder.value)
            == workdir_lib.config_to_dict(hyper_deep.run_config(config, run)))


# ---- the pipeline end to end ---------------------------------------------------------------------


def test_interrupted_after_pool_then_completed(pipeline):
  assert stage_actions(pipeline['after_pool']) == {'pool': 'ran'}
  assert 'metrics.json' not in pipeline['files_after_pool']
  assert 'selection' not in pipeline['files_after_pool']
  full = stage_actions(pipeline['after_full'])
  assert full['pool'] == 'skipped'
  assert pipeline['after_full'][0]['trained'] == []
  for stage in ('select', 'stratify', 'fixed_init', 'evaluate'):
    assert full[stage] == 'ran', stage
  assert full['deep_baseline'] == 'skipped'  # disabled in this config


def test_rerun_skips_every_stage(pipeline):
  assert set(stage_actions(pipeline['after_rerun']).values()) == {'skipped'}
  assert pipeline['rerun_mtime'] == pipeline['mtime']
  assert pipeline['rerun_metrics'] == pipeline['metrics']


def test_deleted_artifacts_are_recomputed_without_training(pipeline, tmp_path):
  workdir, config = pipeline['workdir'], pipeline['config']
  os.remove(os.path.join(workdir, hyper_deep.SELECTION_DIR, f'{hyper_deep.HYPER_DEEP}.json'))
  os.remove(os.path.join(workdir, workdir_lib.METRICS_FILE))
  before = len(hyper_deep.read_stage_log(workdir))
  metrics = hyper_deep.run_pipeline(config, workdir)
  log = hyper_deep.read_stage_log(workdir)[before:]
  assert all(not entry.get('trained') for entry in log)
  actions = stage_actions(log)
  assert actions['pool'] == 'skipped' and actions['stratify'] == 'ran'
  assert actions['evaluate'] == 'ran'
  assert metrics == pipeline['metrics']


def test_metrics_and_selection_files(pipeline):
  workdir, metrics = pipeline['workdir'], pipeline['metrics']
  assert metrics == workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE))
  keys = {'nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy', 'disagreement',
          'avg_kl', 'member_nll', 'member_accuracy'}
  for values in [metrics, *metrics['baselines'].values()]:
    assert keys <= set(values['validation']) and keys <= set(values['test'])
    assert values['num_params'] > 0 and values['train_seconds'] > 0
  assert set(metrics['baselines']) == {'best_single', 'hyper_ens', 'fixed_init_hyper_ens'}
  assert len(metrics['baselines']['best_single']['test']['member_nll']) == 1

  summary = workdir_lib.read_json(os.path.join(workdir, hyper_deep.SELECTION_FILE))
  assert summary['ensemble_size'] == 2 and summary['pool_size'] == 3 and summary['stratified']
  for name in ('hyper_deep', 'hyper_ens', 'fixed_init_hyper_ens', 'best_single'):
    chosen = summary[name]
    assert 1 <= len(chosen['members']) <= 2
    assert sum(m['weight'] for m in chosen['members']) == pytest.approx(1.0)
    history = chosen['validation_nll_history']
    assert all(b < a for a, b in itertools.pairwise(history))
    for m in chosen['members']:
      assert set(m) >= {'hparams', 'seed', 'init_seed', 'run', 'index', 'count', 'weight'}
  # The hyper-deep ensemble's validation NLL is at least as good: its pool contains every member
  # the hyper ensemble chose.
  assert (summary['hyper_deep']['validation_nll']
          <= summary['hyper_ens']['validation_nll'] + 1e-12)
  # The reported ensemble NLL is that of the selection, recomputed from the saved logits.
  assert metrics['validation']['nll'] == pytest.approx(summary['hyper_deep']['validation_nll'],
                                                       rel=1e-5)
  # DIR/predictions holds the picks, duplicates repeated: their plain average is the ensemble.
  logits, labels = workdir_lib.read_predictions(workdir, 'test')
  assert logits.shape[0] == len(summary['hyper_deep']['picks'])
  assert metrics_lib.compute_metrics(logits, labels)['nll'] == pytest.approx(
      metrics['test']['nll'], rel=1e-6)


def test_stratified_members_share_the_chosen_settings(pipeline):
  workdir = pipeline['workdir']
  hyper_ens = workdir_lib.read_json(os.path.join(workdir, 'selection', 'hyper_ens.json'))
  chosen = [hyper_ens['pool'][i] for i in hyper_ens['selection']['members']]
  stratified = workdir_lib.read_json(os.path.join(workdir, 'selection', 'hyper_deep.json'))
  pool = stratified['pool']
  assert len(pool) == 2 * len(chosen)  # K inits per chosen setting, the pool member included
  for setting in {tuple(sorted(m['hparams'].items())) for m in chosen}:
    inits = [m for m in pool if tuple(sorted(m['hparams'].items())) == setting]
    assert len(inits) == 2 and len({m['seed'] for m in inits}) == 2


def test_fixed_init_pool_shares_member_zeros_init(pipeline):
  workdir = pipeline['workdir']
  pool = checkpoint_params(os.path.join(workdir, 'pool', 'members_0000_0003'))
  fixed = checkpoint_params(os.path.join(workdir, 'fixed_init_pool', 'members_0000_0003'))
  # Member 0: same seed, setting and init in both pools → the same network.
  for a, b in zip(jax.tree.leaves(pool), jax.tree.leaves(fixed)):
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
  # Member 1: same seed and setting, but the fixed-init pool starts it from member 0's init.
  assert not np.allclose(pool['hidden_0']['kernel'][1], fixed['hidden_0']['kernel'][1])


def test_pool_member_equals_single_model_trained_alone(pipeline, tmp_path):
  """Member i of the vectorised pool = the single model with seed + i and setting i."""
  workdir, config = pipeline['workdir'], pipeline['config']
  plan = workdir_lib.read_json(os.path.join(workdir, hyper_deep.PLAN_FILE))
  i = 2
  single = default.get_config('method=single,smoke')
  single.seed = config.seed + i
  for name, value in plan['settings'][i].items():
    single.hparams[name] = value
  train.train_and_evaluate(single, str(tmp_path))
  alone = checkpoint_params(str(tmp_path))
  pooled = checkpoint_params(os.path.join(workdir, 'pool', 'members_0000_0003'))
  for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(pooled), strict=True):
    assert a.shape[0] == 1
    np.testing.assert_allclose(a[0], b[i], rtol=1e-4, atol=1e-5)
  # And the setting really differs from the default, so the per-member value was used.
  assert plan['settings'][i]['l2'] != config.hparams.l2
