"""Resumption: a run stopped (or killed) mid-way, then resumed, ends bitwise equal to an
uninterrupted one.

Every leaf of the final train state (parameters, optimiser state, model state, hyperparameters,
tuner, RNG keys, step) is compared, restored from the last checkpoint of each workdir.
"""

from __future__ import annotations

import os
import signal

import pytest

from hyper_ensembles import train
from tests.conftest import (
  assert_resumes_like_uninterrupted,
  assert_states_equal,
  checkpoint_steps,
  restore_state,
  signal_after_first_checkpoint,
  smoke_config,
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


@pytest.mark.slow
def test_killed_subprocess_resumes_to_uninterrupted_parameters(tmp_path):
  """SIGKILL after the first checkpoint; resume; final state equals an uninterrupted run's."""
  overrides = dict(num_train_steps=300, checkpoint_every_steps=10, log_every_steps=50,
                   eval_every_steps=0)
  config = smoke_config('deep', 'mlp', **overrides)
  workdir = tmp_path / 'killed'
  returncode, stderr, killed_after = signal_after_first_checkpoint(
      workdir, overrides, signal.SIGKILL, timeout=180)
  if killed_after is None:  # It finished before a checkpoint was seen; resuming still must work.
    assert returncode == 0, stderr[-3000:]
  else:
    assert returncode == -signal.SIGKILL
  print(f'killed after checkpoint {killed_after}; on disk then: '
        f'{checkpoint_steps(workdir / "checkpoints")}')
  assert_resumes_like_uninterrupted(config, str(workdir), str(tmp_path / 'reference'))
