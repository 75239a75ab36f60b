"""Tests for the launchers (hyper_ensembles/launching/: jobs.py, local.py, registry.py,
ray_launcher.py, ray_task.py) and sweep.py.

One sweep of four smoke runs (MLP, digits; their own seeds and L2) is trained twice: by the local
launcher in this process, and by `scripts/sweep.py --run --launcher=ray --max_concurrent=2` (a Ray
started for it; each run a subprocess started from its config.json) with a fifth run in the middle
that fails (an unknown dataset). Then the Ray sweep of the four is run again. `slow`: Ray's start
and the subprocesses take a minute or two on a busy 2-core CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from hyper_ensembles import hyper_deep
from hyper_ensembles.launching import jobs, local, registry
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import smoke_config, subprocess_env

pytestmark = pytest.mark.slow

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
ENTRIES = [{'workdir': f'run_{i}', 'stage': 'pool',
            'overrides': {'seed': 10 + i, 'hparams.l2': 10.0 ** (i - 2)}} for i in range(4)]
BAD = {'workdir': 'bad', 'stage': 'pool', 'overrides': {'dataset': 'no_such_dataset'}}


def _jobs(config, workdir: str, entries) -> list[jobs.Job]:
  return [jobs.Job(name=e['workdir'], workdir=os.path.join(workdir, e['workdir']),
                     config=hyper_deep.apply_overrides(config, e['overrides'])) for e in entries]


def _ray_sweep(config, workdir: str, entries, temp_dir: str) -> subprocess.CompletedProcess:
  # The base config as this process has it (configs/saved.py), so every invocation sees the same.
  base = os.path.join(workdir, 'base_config.json')
  workdir_lib.write_json(base, workdir_lib.config_to_dict(config))
  sweep_file = os.path.join(workdir, 'entries.json')
  workdir_lib.write_json(sweep_file, entries)
  command = [sys.executable, os.path.join(REPO, 'scripts', 'sweep.py'),
             f'--config={os.path.join(REPO, "configs", "saved.py")}:{base}',
             f'--workdir={workdir}', f'--sweep_file={sweep_file}', '--run', '--launcher=ray',
             '--max_concurrent=2', f'--ray_temp_dir={temp_dir}']
  # The runs' subprocesses compile as this test session does and share its compilation cache.
  return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                        timeout=480)


@pytest.fixture(scope='module')
def sweeps(tmp_path_factory):
  config = smoke_config('deep')
  local_dir = str(tmp_path_factory.mktemp('local_sweep'))
  ray_dir = str(tmp_path_factory.mktemp('ray_sweep'))
  temp_dir = tempfile.mkdtemp(prefix='rhe', dir='/tmp')  # short: Ray's unix sockets live under it
  out = {'local_dir': local_dir, 'ray_dir': ray_dir, 'config': config}
  try:
    out['local'] = local.LocalLauncher().run(_jobs(config, local_dir, ENTRIES))
    out['first'] = _ray_sweep(config, ray_dir, [*ENTRIES[:2], BAD, *ENTRIES[2:]], temp_dir)
    logs = [os.path.join(ray_dir, e['workdir'], jobs.LOG_FILE) for e in ENTRIES]
    out['log_mtimes'] = [os.path.getmtime(p) for p in logs]
    out['rerun'] = _ray_sweep(config, ray_dir, ENTRIES, temp_dir)
    out['rerun_log_mtimes'] = [os.path.getmtime(p) for p in logs]
  finally:
    shutil.rmtree(temp_dir, ignore_errors=True)
  return out


def _assert_metrics_equal(a, b, path=''):
  if isinstance(a, dict):
    assert set(a) == set(b), path
    for key in a:
      if key != 'train_seconds':  # wall-clock
        _assert_metrics_equal(a[key], b[key], f'{path}.{key}')
  elif isinstance(a, int | float | list):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5,
                               atol=1e-6, err_msg=path)
  else:
    assert a == b, path


def test_ray_sweep_gives_the_sequential_metrics(sweeps):
  assert [o.status for o in sweeps['local']] == ['trained'] * 4
  for entry in ENTRIES:
    local = workdir_lib.read_json(os.path.join(sweeps['local_dir'], entry['workdir'],
                                               workdir_lib.METRICS_FILE))
    ray_run = os.path.join(sweeps['ray_dir'], entry['workdir'])
    _assert_metrics_equal(local, workdir_lib.read_json(os.path.join(ray_run,
                                                                    workdir_lib.METRICS_FILE)))
    # The same config.json either way: the subprocess trained exactly the driver's config.
    assert (workdir_lib.read_json(os.path.join(ray_run, workdir_lib.CONFIG_FILE))
            == workdir_lib.config_to_dict(hyper_deep.apply_overrides(sweeps['config'],
                                                                      entry['overrides'])))
    with open(os.path.join(ray_run, jobs.LOG_FILE)) as f:
      assert 'hyper_ensembles.main' in f.read()


def test_a_failed_run_is_reported_and_the_others_finish(sweeps):
  first = sweeps['first']
  assert first.returncode == 1, first.stdout + first.stderr
  for i, name in [(0, 'run_0'), (1, 'run_1'), (3, 'run_2'), (4, 'run_3')]:
    assert f'[{i}] {name}: trained' in first.stdout
  bad_dir = os.path.join(sweeps['ray_dir'], 'bad')
  assert '[2] bad: failed' in first.stdout
  # The report at the end names the run, its workdir and log, and the end of the log says why.
  assert '1 of 5 runs failed' in first.stderr
  assert f'workdir {bad_dir}' in first.stderr
  assert f'log {os.path.join(bad_dir, jobs.LOG_FILE)}' in first.stderr
  assert 'no_such_dataset' in first.stderr
  for entry in ENTRIES:
    assert jobs.is_complete(os.path.join(sweeps['ray_dir'], entry['workdir']))


def test_rerun_does_no_work(sweeps):
  rerun = sweeps['rerun']
  assert rerun.returncode == 0, rerun.stdout + rerun.stderr
  assert [line.split(': ')[1] for line in rerun.stdout.splitlines()] == ['done'] * 4
  assert 'ray: starting' not in rerun.stdout  # Ray is not even started
  assert sweeps['rerun_log_mtimes'] == sweeps['log_mtimes']


def test_launch_options_errors():
  with pytest.raises(ValueError, match=r"launcher 'slurm'; choose one of \['local', 'ray'\]"):
    registry.create(jobs.LaunchOptions(launcher='slurm'))
  with pytest.raises(ValueError, match='max_concurrent must be >= 0'):
    jobs.LaunchOptions(launcher='ray', max_concurrent=-1)


def test_ray_task_and_workdir_import_without_jax():
  # A Ray worker imports ray_task (and through it runs/workdir.py); only the run's own subprocess
  # may load JAX, with the thread limits and devices it was given.
  code = ('import sys, hyper_ensembles.launching.ray_task, hyper_ensembles.runs.workdir; '
          'loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax")); '
          'assert not loaded, loaded')
  result = subprocess.run([sys.executable, '-c', code], env=subprocess_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
