"""SPMD: the same run on 8 (fake CPU) devices, or on two processes, matches the 1-device run.

The multi-device runs happen in subprocesses, since XLA_FLAGS (the fake device count) is read once
per process; the 1-device references are the session's in-process smoke runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, subprocess_env

METHODS = ('deep', 'batch')
SCALARS = ('nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy', 'disagreement',
           'avg_kl', 'member_nll', 'member_accuracy')

_EIGHT_DEVICE_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax
    from configs import default
    from hyper_ensembles import train
    assert jax.device_count() == 8, jax.devices()
    out = {}
    for method, workdir in zip(('deep', 'batch'), sys.argv[1:3]):
      train.train_and_evaluate(default.get_config(f'method={method},arch=mlp,smoke'), workdir)
    config = default.get_config('method=deep,arch=mlp,smoke')
    config.batch_size = 36
    try:
      train.train_and_evaluate(config, sys.argv[3])
    except ValueError as e:
      out['indivisible_error'] = str(e)
    print('RESULT ' + json.dumps(out))
''')


def _run(command, env, timeout):
  result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
  assert result.returncode == 0, result.stderr[-5000:]
  return result


def _assert_same_results(workdir: str, reference: str, rtol=1e-4, atol=1e-5) -> None:
  with open(os.path.join(workdir, 'metrics.json')) as f:
    got = json.load(f)
  with open(os.path.join(reference, 'metrics.json')) as f:
    expected = json.load(f)
  assert got['num_params'] == expected['num_params']
  for name in ('validation', 'test'):
    for key in SCALARS:
      np.testing.assert_allclose(got[name][key], expected[name][key], rtol=rtol, atol=atol,
                                 err_msg=f'{name}/{key}')
    with np.load(os.path.join(workdir, 'predictions', f'{name}.npz')) as a, \
        np.load(os.path.join(reference, 'predictions', f'{name}.npz')) as b:
      np.testing.assert_array_equal(a['labels'], b['labels'])
      np.testing.assert_allclose(a['logits'], b['logits'], rtol=rtol, atol=10 * atol)


@pytest.mark.slow
def test_eight_devices_match_one_device(tmp_path, smoke_run):
  workdirs = [str(tmp_path / m) for m in METHODS]
  result = _run([sys.executable, '-c', _EIGHT_DEVICE_SCRIPT, *workdirs, str(tmp_path / 'bad')],
                subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=8'),
                timeout=300)
  line = [ln for ln in result.stdout.splitlines() if ln.startswith('RESULT ')][-1]
  out = json.loads(line[len('RESULT '):])
  message = out.get('indivisible_error', '')
  assert '36' in message and '8 devices' in message, out
  assert not os.path.exists(tmp_path / 'bad' / 'checkpoints')  # it failed before training

  for method, workdir in zip(METHODS, workdirs):
    _assert_same_results(workdir, smoke_run(method, 'mlp'))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_device(tmp_path, smoke_run):
  """Two processes (one CPU device each) on 127.0.0.1 via jax.distributed; process 0 writes."""
  workdir = tmp_path / 'multihost'
  port = _free_port()
  env = subprocess_env()
  processes = [
      subprocess.Popen(
          [sys.executable, '-m', 'hyper_ensembles.main',
           '--config=configs/default.py:method=deep,arch=mlp,smoke', f'--workdir={workdir}',
           '--multihost', f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
           f'--process_id={i}'],
          cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  errors = []
  try:
    for process in processes:
      _, stderr = process.communicate(timeout=240)
      errors.append(stderr)
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  for process, stderr in zip(processes, errors):
    assert process.returncode == 0, stderr[-5000:]
  _assert_same_results(str(workdir), smoke_run('deep', 'mlp'))
