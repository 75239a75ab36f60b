"""Bad input stops `train_and_evaluate` before training with an error naming the value and the fix.

Also: a non-finite loss stops the run with the step number and keeps the last good checkpoint.
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np
import pytest

from hyper_ensembles import train
from hyper_ensembles.data.registry import DATASETS
from hyper_ensembles.methods.registry import METHODS
from hyper_ensembles.models.registry import ARCHITECTURES
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import restore_state, smoke_config


def _assert_nothing_trained(workdir, config_recorded: bool = False) -> None:
  """No checkpoint or result; and no config.json, which would refuse the corrected rerun."""
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))
  assert not os.path.exists(os.path.join(workdir, 'metrics.json'))
  assert os.path.exists(os.path.join(workdir, 'config.json')) == config_recorded


@pytest.mark.parametrize('key,valid', [
    ('method', sorted(METHODS)),
    ('arch', sorted(ARCHITECTURES)),
    ('dataset', sorted(DATASETS)),
])
def test_unknown_name_in_an_overridden_config(tmp_path, key, valid):
  """`--config.method=bogus` bypasses get_config's check; the run must still refuse it."""
  config = smoke_config()
  setattr(config, key, 'bogus')
  with pytest.raises(ValueError) as excinfo:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(excinfo.value)
  assert "'bogus'" in message
  assert all(name in message for name in valid), message
  _assert_nothing_trained(tmp_path)


@pytest.mark.parametrize('dataset', ['digits', 'fashion_mnist'])
def test_unknown_data_source(tmp_path, dataset):
  config = smoke_config(dataset=dataset, data__source='bogus')
  with pytest.raises(ValueError) as excinfo:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(excinfo.value)
  assert "'bogus'" in message and 'default' in message and dataset in message
  if dataset == 'fashion_mnist':
    assert 'idx' in message and 'tfds' in message
  _assert_nothing_trained(tmp_path)


def test_missing_fashion_mnist_directory(tmp_path):
  missing = str(tmp_path / 'nonexistent')
  config = smoke_config(dataset='fashion_mnist', data__fashion_mnist_dir=missing)
  with pytest.raises(FileNotFoundError) as excinfo:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  message = str(excinfo.value)
  assert missing in message
  assert 'tfds' in message  # says how to fix it
  _assert_nothing_trained(tmp_path / 'run')


def test_batch_larger_than_dataset(tmp_path):
  config = smoke_config(batch_size=5000)
  with pytest.raises(ValueError) as excinfo:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(excinfo.value)
  assert '5000' in message and '1222' in message, message  # digits: 1 222 training images
  _assert_nothing_trained(tmp_path)
  # The corrected command may reuse the workdir (stop_after_steps=0: set up, do not train).
  assert train.train_and_evaluate(smoke_config(), str(tmp_path), stop_after_steps=0) == {}


def test_workdir_of_a_different_config_is_refused(tmp_path):
  original = smoke_config()
  workdir_lib.prepare_workdir(str(tmp_path), original)  # what the first run records
  changed = smoke_config(optimizer__learning_rate=0.5)
  with pytest.raises(ValueError) as excinfo:
    train.train_and_evaluate(changed, str(tmp_path))
  message = str(excinfo.value)
  assert 'optimizer.learning_rate' in message
  assert '0.001' in message and '0.5' in message
  assert 'config.json' in message and '--workdir' in message  # how to resume or start anew
  _assert_nothing_trained(tmp_path, config_recorded=True)
  # The recorded config is untouched.
  assert workdir_lib.read_json(str(tmp_path / 'config.json')) == workdir_lib.config_to_dict(
      original)


def test_non_finite_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  """The learning rate jumps ×1e30 at step 7: parameters overflow and the loss turns non-finite.

  Checkpoints every 3 steps: 3 and 6 are good; the run must stop before saving 9, name the
  failing step, and leave a restorable checkpoint from before it.
  """
  config = smoke_config('single', 'mlp', checkpoint_every_steps=3, log_every_steps=3,
                        eval_every_steps=0, optimizer__decay_factor=1e30)
  steps_per_epoch = 1222 // config.batch_size
  config.optimizer.decay_epochs = (7 / steps_per_epoch,)
  config.optimizer.decay_fractions = ()
  with pytest.raises(FloatingPointError) as excinfo:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(excinfo.value)
  match = re.search(r'at step (\d+)', message)
  assert match, message
  failing_step = int(match.group(1))
  assert 7 < failing_step <= config.num_train_steps, message

  state = restore_state(config, str(tmp_path))
  assert int(state.step) < failing_step
  assert int(state.step) == 6
  assert f'step {int(state.step)}' in message
  for leaf in jax.tree.leaves(state.params):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert not os.path.exists(tmp_path / 'metrics.json')


def test_command_line_reports_input_errors_in_one_line(tmp_path):
  """`main.py` turns a user error into one `error (...)` line and exit status 1, no traceback."""
  import subprocess
  import sys

  from tests.conftest import REPO_ROOT, subprocess_env
  missing = tmp_path / 'no_such_dir'
  proc = subprocess.run(
      [sys.executable, '-m', 'hyper_ensembles.main',
       '--config=configs/default.py:method=single,dataset=fashion_mnist,smoke',
       f'--config.data.fashion_mnist_dir={missing}', f'--workdir={tmp_path / "run"}'],
      cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  last_line = proc.stderr.strip().splitlines()[-1]
  assert last_line.startswith('error (FileNotFoundError)') and str(missing) in last_line
  assert 'Traceback' not in proc.stderr
