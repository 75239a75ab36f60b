"""Resumption: a run stopped (or killed) mid-way, then resumed, ends bitwise equal to an
uninterrupted one.

Every leaf of the final train state (parameters, optimiser state, model state, hyperparameters,
tuner, RNG keys, step) is compared, restored from the last checkpoint of each workdir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hyper_ensembles import train
from tests.conftest import (
  REPO_ROOT,
  assert_states_equal,
  cli_overrides,
  restore_state,
  smoke_config,
  subprocess_env,
)

# 1 222 digits training images / 256 = 4 steps per epoch: 12 steps cross two epoch boundaries, and
# stopping after step 5 or 9 resumes inside a later epoch than the one the run started in.
RESUME_OVERRIDES = dict(batch_size=256, num_train_steps=12, checkpoint_every_steps=4)


@pytest.mark.parametrize('method', ['deep', 'batch'])
def test_stop_and_resume_equals_uninterrupted(tmp_path, method):
  config = smoke_config(method, 'mlp', **RESUME_OVERRIDES)
  reference = str(tmp_path / 'reference')
  expected_metrics = train.train_and_evaluate(config, reference)

  resumed = str(tmp_path / 'resumed')
  # Stop between checkpoints (5: saved on stop) and again on a checkpoint step (8).
  assert train.train_and_evaluate(config, resumed, stop_after_steps=5) == {}
  assert not os.path.exists(os.path.join(resumed, 'metrics.json'))
  assert int(restore_state(config, resumed).step) == 5
  assert train.train_and_evaluate(config, resumed, stop_after_steps=8) == {}
  assert int(restore_state(config, resumed).step) == 8
  metrics = train.train_and_evaluate(config, resumed)

  final = restore_state(config, resumed)
  assert int(final.step) == 12
  assert_states_equal(final, restore_state(config, reference))
  for name in ('validation', 'test'):
    assert metrics[name] == expected_metrics[name]


def _latest_checkpoint(directory: str) -> int | None:
  """Largest finished checkpoint step in an orbax directory (temporary dirs are not digits)."""
  try:
    steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
  except FileNotFoundError:
    return None
  return max(steps, default=None)


def test_killed_subprocess_resumes_to_uninterrupted_parameters(tmp_path):
  """SIGKILL after the first checkpoint; resume; final state equals an uninterrupted run's."""
  overrides = dict(num_train_steps=300, checkpoint_every_steps=10, log_every_steps=50,
                   eval_every_steps=0)
  config = smoke_config('deep', 'mlp', **overrides)
  workdir = tmp_path / 'killed'
  command = [sys.executable, '-m', 'hyper_ensembles.main',
             '--config=configs/default.py:method=deep,arch=mlp,smoke',
             *cli_overrides(**overrides), f'--workdir={workdir}']
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  killed_after = None
  try:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
      step = _latest_checkpoint(workdir / 'checkpoints')
      if step is not None:
        process.send_signal(signal.SIGKILL)
        killed_after = step
        break
      time.sleep(0.01)
    _, stderr = process.communicate(timeout=60)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  if killed_after is None:  # It finished before a checkpoint was seen; resuming still must work.
    assert process.returncode == 0, stderr.decode()[-3000:]
  else:
    assert process.returncode == -signal.SIGKILL

  print(f'killed after checkpoint {killed_after}; on disk then: '
        f'{_latest_checkpoint(workdir / "checkpoints")}')
  train.train_and_evaluate(config, str(workdir))
  reference = str(tmp_path / 'reference')
  train.train_and_evaluate(config, reference)
  final = restore_state(config, str(workdir))
  assert int(final.step) == 300
  assert_states_equal(final, restore_state(config, reference))
