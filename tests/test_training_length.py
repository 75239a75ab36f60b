"""The training-length rule (hyper_ensembles/reproduction/training_length.py): against a
brute-force oracle and closed forms, read back from a real run's event files, and the lengths the
configs state recomputed from the curves committed under docs/."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default as default_config
from configs import table1 as table1_config
from hyper_ensembles.reproduction import training_length as rule
from hyper_ensembles.runs import workdir as workdir_lib
from tests.conftest import REPO_ROOT, smoke_config, subprocess_env

TABLE1_CURVES = os.path.join(REPO_ROOT, 'docs', 'table1_validation_curves.json')
DEMO_CURVES = os.path.join(REPO_ROOT, 'docs', 'demo_validation_curves.json')


def curve(nll, lr=None) -> rule.Curve:
  n = len(nll)
  return rule.Curve(arch='mlp', dataset='digits', epochs=[float(e) for e in range(1, n + 1)],
                    validation_nll=list(nll), validation_accuracy=[0.5] * n,
                    learning_rate=list(lr) if lr is not None else [1e-3] * n)


def oracle_centre(nll, lr, window=5):
  """Every window of the constant-LR prefix, by numpy; the first of equal minima."""
  n = int(np.argmax(np.asarray(lr) != lr[0])) if np.any(np.asarray(lr) != lr[0]) else len(lr)
  means = np.convolve(np.asarray(nll[:n]), np.ones(window), 'valid')
  return float(np.argmin(means) + window // 2 + 1)  # epochs are 1-based


def test_centre_of_a_parabola_and_the_length_it_gives():
  epochs = np.arange(1, 61)
  nll = 0.3 + 0.001 * (epochs - 17.0) ** 2
  length = rule.training_length({'a': curve(nll)})
  assert length.e_star == 17 and length.epochs == 40  # 2·17 = 34 → 40


def test_epochs_after_the_first_decay_are_ignored():
  nll = np.concatenate([np.linspace(1.0, 0.5, 20), np.full(20, 0.1)])  # lowest after the decay
  lr = [1e-3] * 20 + [2e-4] * 20
  assert rule.window_centre(curve(nll, lr)) == 18  # the last full window before the decay


def test_earliest_centre_over_curves_wins():
  epochs = np.arange(1, 41)
  curves = {'late': curve((epochs - 30.0) ** 2), 'early': curve((epochs - 12.0) ** 2)}
  length = rule.training_length(curves)
  assert length.centres == {'late': 30, 'early': 12} and length.e_star == 12
  assert length.epochs == 30


@pytest.mark.parametrize('seed', range(20))
def test_centre_matches_a_brute_force_oracle(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 60))
  nll = rng.uniform(0.1, 1.0, n)
  decay = int(rng.integers(5, n + 1))
  lr = [1e-3] * decay + [1e-4] * (n - decay)
  assert rule.window_centre(curve(nll, lr)) == oracle_centre(nll, lr)


@pytest.mark.parametrize('bad,match', [
    (dict(nll=[0.5] * 4), 'at least 5'),
    (dict(nll=[0.5] * 10, lr=[1e-3] * 3 + [1e-4] * 7), '3 validations'),
])
def test_too_short_a_curve_is_refused(bad, match):
  with pytest.raises(ValueError, match=match):
    rule.window_centre(curve(bad['nll'], bad.get('lr')))


def test_no_curve_is_refused():
  with pytest.raises(ValueError, match='at least one'):
    rule.training_length({})


@pytest.mark.parametrize('arch', table1_config.ARCHS)
def test_table1_lengths_follow_from_the_committed_fashion_mnist_curves(arch):
  curves = rule.load_curves(TABLE1_CURVES, arch=arch, dataset='fashion_mnist')
  assert curves, arch
  for c in curves.values():
    assert rule.window_centre(c) == oracle_centre(c.validation_nll, c.learning_rate)
  assert table1_config.NUM_EPOCHS[arch] == rule.training_length(curves).epochs


def test_demo_length_follows_from_the_committed_digits_curves():
  curves = rule.load_curves(DEMO_CURVES, dataset='digits')
  assert len(curves) == 3  # three seeds: one digits curve is too noisy to place its minimum
  length = rule.training_length(curves)
  assert length.epochs == default_config.DIGITS_EPOCHS
  assert default_config.get_config('').num_epochs == length.epochs
  assert default_config.get_config('arch=lenet,method=batch').num_epochs == length.epochs


def test_read_curve_from_a_run_and_the_command(smoke_run, tmp_path):
  """A real run's validation points: one per eval step, the last equal to metrics.json's."""
  workdir = smoke_run('single', 'mlp')
  config = smoke_config('single', 'mlp')
  c = rule.read_curve(workdir, steps_per_epoch=config.eval_every_steps, arch='mlp',
                      dataset='digits')
  n_evals = config.num_train_steps // config.eval_every_steps
  assert c.epochs == [float(e) for e in range(1, n_evals + 1)]
  final = workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE))['validation']
  assert math.isclose(c.validation_nll[-1], final['nll'], rel_tol=1e-5)
  assert math.isclose(c.validation_accuracy[-1], final['accuracy'], rel_tol=1e-5)
  assert c.learning_rate[0] == pytest.approx(config.optimizer.learning_rate)

  out = tmp_path / 'curves.json'
  command = [sys.executable, os.path.join(REPO_ROOT, 'scripts', 'training_length.py')]
  run = lambda *args: subprocess.run([*command, *args], env=subprocess_env(), capture_output=True,
                                     text=True, timeout=300)
  # Two evaluations are fewer than one 5-epoch window: a one-line error, no file written.
  proc = run(f'--run=smoke={workdir}', f'--steps_per_epoch={config.eval_every_steps}',
             '--arch=mlp', '--dataset=digits', f'--out={out}')
  assert proc.returncode == 1 and 'at least 5' in proc.stderr and not out.exists()
  proc = run(f'--curves={DEMO_CURVES}')
  assert proc.returncode == 0, proc.stderr
  assert f'= {default_config.DIGITS_EPOCHS} epochs' in proc.stdout
