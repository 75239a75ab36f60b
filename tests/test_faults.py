"""Faults during a run: a corrupted checkpoint, Ctrl-C, a divergence that stays finite.

Each must leave the workdir resumable and end in one clear line; resuming stays bitwise identical
to an uninterrupted run (tests/test_resume.py's comparison).
"""

from __future__ import annotations

import os
import signal

import pytest

from hyper_ensembles import train
from hyper_ensembles.runs import cli
from hyper_ensembles.training import divergence
from hyper_ensembles.training.checkpoints import CheckpointError
from tests.conftest import (
  assert_resumes_like_uninterrupted,
  assert_states_equal,
  checkpoint_steps,
  restore_state,
  signal_after_first_checkpoint,
  smoke_config,
)

# 1 222 digits images / 256 = 4 steps per epoch; checkpoints at 4 and 8 (two kept), 12 at the end.
OVERRIDES = dict(batch_size=256, num_train_steps=12, checkpoint_every_steps=4)


def _truncate_arrays(step_dir: str) -> None:
  """Cuts every array data file of a checkpoint to half its length."""
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      if os.sep + 'd' + os.sep in path + os.sep or 'ocdbt' in root or name.startswith('ocdbt'):
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)


def _garble_metadata(step_dir: str) -> None:
  """Overwrites the checkpoint's metadata files with bytes that are not UTF-8 JSON."""
  for root, _, files in os.walk(step_dir):
    for name in files:
      if 'METADATA' in name.upper() or name.endswith('.json'):
        with open(os.path.join(root, name), 'wb') as f:
          f.write(b'\xff\xfe garbage \x00\x81')


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  config = smoke_config('deep', 'mlp', **OVERRIDES)
  workdir = str(tmp_path_factory.mktemp('reference'))
  train.train_and_evaluate(config, workdir)
  return config, restore_state(config, workdir)


@pytest.mark.parametrize('corrupt', [_truncate_arrays, _garble_metadata])
def test_corrupted_latest_checkpoint_falls_back_to_the_previous(tmp_path, reference, corrupt,
                                                                caplog):
  config, expected = reference
  workdir = str(tmp_path / 'run')
  assert train.train_and_evaluate(config, workdir, stop_after_steps=8) == {}
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert sorted(d for d in os.listdir(checkpoints) if d.isdigit()) == ['4', '8']
  corrupt(os.path.join(checkpoints, '8'))

  train.train_and_evaluate(config, workdir)  # resumes from step 4, trains to 12
  assert any('8' in r.getMessage() and 'cannot be restored' in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]
  assert os.path.isdir(os.path.join(checkpoints, '8.corrupt'))  # set aside, not deleted
  final = restore_state(config, workdir)
  assert int(final.step) == 12
  assert_states_equal(final, expected)


def test_no_intact_checkpoint_is_one_line_naming_the_directory(tmp_path, reference):
  config, _ = reference
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir, stop_after_steps=8)
  checkpoints = os.path.join(workdir, 'checkpoints')
  for step in ('4', '8'):
    _garble_metadata(os.path.join(checkpoints, step))
  with pytest.raises(CheckpointError) as excinfo:
    train.train_and_evaluate(config, workdir)
  line = cli.error_line(excinfo.value)
  assert line.startswith('error (CheckpointError)') and checkpoints in line, line
  assert 'step 8' in line and 'step 4' in line
  assert sorted(d for d in os.listdir(checkpoints) if d.isdigit()) == ['4', '8']  # kept


def test_finite_divergence_stops_with_one_line_and_keeps_checkpoints(tmp_path):
  """Adam at a learning rate of 1e6: the loss explodes but may stay finite; the run must stop."""
  config = smoke_config('single', 'mlp', num_train_steps=60, checkpoint_every_steps=1,
                        log_every_steps=1, eval_every_steps=0, optimizer__learning_rate=1e6,
                        optimizer__decay_fractions=())
  with pytest.raises(divergence.DivergedError) as excinfo:
    train.train_and_evaluate(config, str(tmp_path))
  line = cli.error_line(excinfo.value)
  assert line.startswith('error (DivergedError): Training diverged') and 'step' in line, line
  assert not os.path.exists(tmp_path / 'metrics.json')
  state = restore_state(config, str(tmp_path))  # the last good checkpoint is restorable
  assert int(state.step) >= 1


def test_divergence_rule():
  bound = divergence.loss_bound(10)
  assert bound == pytest.approx(1e6 * 2.302585, rel=1e-6)
  divergence.check_losses([2.3, 1e5, bound], 0, bound, 3, 'dir')  # at the bound: still fine
  for bad, at in (([2.3, bound * 1.01], 2), ([float('nan')], 1), ([1.0, 1.0, float('inf')], 3)):
    with pytest.raises(divergence.DivergedError, match=f'at step {10 + at} '):
      divergence.check_losses(bad, 10, bound, 8, 'dir')


@pytest.mark.slow
def test_ctrl_c_saves_the_current_step_and_resumes_bitwise(tmp_path):
  """SIGINT to a training subprocess: a checkpoint at the step reached, one line, status 130."""
  overrides = dict(num_train_steps=1000, checkpoint_every_steps=50, log_every_steps=50,
                   eval_every_steps=0)
  config = smoke_config('deep', 'mlp', **overrides)
  workdir = tmp_path / 'interrupted'
  returncode, stderr, _ = signal_after_first_checkpoint(workdir, overrides, signal.SIGINT)
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert returncode == cli.INTERRUPTED_STATUS, stderr[-3000:]
  assert 'Traceback' not in stderr, stderr[-3000:]
  assert lines[-1].startswith('error (Interrupted): Stopped on Ctrl-C at step '), lines[-3:]
  stopped = int(lines[-1].split('at step ')[1].split()[0])
  assert checkpoint_steps(workdir / 'checkpoints')[-1] == stopped  # saved at the step reached
  assert not (workdir / 'metrics.json').exists()

  assert_resumes_like_uninterrupted(config, str(workdir), str(tmp_path / 'reference'))
