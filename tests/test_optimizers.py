"""Learning-rate schedules: warm-up, decays at absolute epochs and at fractions of the run."""

import ml_collections
import pytest

from hyper_ensembles.training.optimizers import create_learning_rate_schedule, num_train_steps


def _cfg(**overrides) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(dict(
      learning_rate=1.0, warmup_epochs=0.0, decay_epochs=(), decay_fractions=(),
      decay_factor=0.5))
  cfg.update(overrides)
  return cfg


def test_decay_fractions_follow_the_run_length():
  for epochs in (4.0, 10.0):
    run = ml_collections.ConfigDict(dict(num_train_steps=-1, num_epochs=epochs))
    total = num_train_steps(run, steps_per_epoch=10)
    assert total == 10 * epochs
    schedule = create_learning_rate_schedule(_cfg(decay_fractions=(0.5,)), 10, total)
    half = total // 2
    assert float(schedule(half - 1)) == 1.0 and float(schedule(half)) == 0.5


def test_decay_epochs_are_absolute_and_coinciding_decays_compound():
  cfg = _cfg(decay_epochs=(2.0,), decay_fractions=(0.2,))  # both at step 20 of a 100-step run
  schedule = create_learning_rate_schedule(cfg, steps_per_epoch=10, total_steps=100)
  assert float(schedule(19)) == 1.0
  assert float(schedule(20)) == pytest.approx(0.25)


def test_warmup_then_constant_and_decay_in_absolute_steps():
  cfg = _cfg(warmup_epochs=1.0, decay_epochs=(3.0,))
  schedule = create_learning_rate_schedule(cfg, steps_per_epoch=10, total_steps=100)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(29)) == pytest.approx(1.0) and float(schedule(30)) == pytest.approx(0.5)


def test_num_train_steps_override():
  run = ml_collections.ConfigDict(dict(num_train_steps=7, num_epochs=100.0))
  assert num_train_steps(run, steps_per_epoch=10) == 7
