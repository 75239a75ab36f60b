"""The method interface the training loop sees: optional tuner hooks, settings read once, one model.

Oracles: the hooks' documented defaults for methods without a tuner, a count of model builds,
an explicit count of the full batches in an epoch, and a fresh interpreter for the layer-form
registry (so that no earlier import can have filled it).
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from hyper_ensembles.data.dataset import ArraySplit, DatasetInfo
from hyper_ensembles.data.streams import TrainStream, steps_per_epoch
from hyper_ensembles.methods import base
from hyper_ensembles.methods.registry import create_method
from hyper_ensembles.training import sharding, steps
from hyper_ensembles.training.state import create_train_state
from tests.conftest import smoke_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = DatasetInfo('digits', 10, (8, 8, 1), (0.5,), (0.25,))
NUM_TRAIN = 100


def _split(n: int) -> ArraySplit:
  rng = np.random.default_rng(0)
  return ArraySplit(rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
                    rng.integers(0, 10, n).astype(np.int32))


@pytest.mark.parametrize('name', ['single', 'deep', 'batch'])
def test_a_method_without_a_tuner_gets_no_tune_step(name):
  method = create_method(smoke_config(name, 'mlp'), DIGITS, NUM_TRAIN)
  assert method.tune_data is None
  assert steps.make_tune_step(method, _split(64), 0, sharding.create_mesh()) is None
  assert method.init_tuner(None) is None
  assert all(method.tune_index(step) is None for step in range(100))
  assert method.tuner_summaries(None) == {}
  assert method.final_hyperparameters(None) is None
  with pytest.raises(NotImplementedError, match=name):
    method.tune_update(None, {})


@pytest.mark.parametrize('name', ['hyper_batch', 'stn'])
def test_a_tuned_method_names_its_validation_stream(name):
  config = smoke_config(name, 'mlp')
  method = create_method(config, DIGITS, NUM_TRAIN)
  assert method.tune_data == base.TuneData(config.hyper.validation_batch_size,
                                           'hyper.validation_batch_size')
  tune = steps.make_tune_step(method, _split(64), 0, sharding.create_mesh())
  assert callable(tune)
  # The loop's stream checks the size the method asked for, naming the config field.
  with pytest.raises(ValueError, match=r'hyper\.validation_batch_size'):
    steps.make_tune_step(method, _split(config.hyper.validation_batch_size - 1), 0,
                         sharding.create_mesh())


def test_hyper_batch_builds_its_model_once_with_the_configured_layer_options(monkeypatch):
  built = []
  create_model = base.create_model

  def counting(*args):
    built.append(args)
    return create_model(*args)

  monkeypatch.setattr(base, 'create_model', counting)
  config = smoke_config('hyper_batch', 'mlp', hyper__tie_uv=False, hyper__embedding_hidden=5,
                        hyper__l2_with_fast_weights=True, hyper__embedding_std=0.25)
  method = create_method(config, DIGITS, NUM_TRAIN)
  assert len(built) == 1
  kit = method.model.kit
  assert kit.form == 'hyper_batch' and kit.num_members == config.num_members
  assert (kit.tie_uv, kit.embedding_hidden, kit.l2_with_fast_weights, kit.embedding_std) == (
      False, 5, True, 0.25)


@pytest.mark.parametrize('name', ['single', 'deep', 'batch', 'hyper_batch', 'stn'])
def test_methods_keep_settings_not_the_config(name):
  config = smoke_config(name, 'mlp', num_members=4)
  method = create_method(config, DIGITS, NUM_TRAIN)
  kept = [key for key, value in vars(method).items()
          if isinstance(value, ml_collections.ConfigDict)]
  assert kept == []
  assert method.num_members == (1 if name in ('single', 'stn') else 4)
  # Changing the config afterwards changes nothing the method uses.
  with config.unlocked():
    config.hparams.l2 = 123.0
    config.num_members = 7
  assert not np.any(np.asarray(method.initial_hparams()['l2']) == 123.0)
  assert method.num_members == (1 if name in ('single', 'stn') else 4)


@pytest.mark.parametrize('n,batch', [(10, 3), (12, 3), (5, 5), (100, 32), (7, 1)])
def test_steps_per_epoch_counts_full_batches(n, batch):
  full = 0
  while (full + 1) * batch <= n:
    full += 1
  assert steps_per_epoch(n, batch) == full
  assert TrainStream(_split(n), batch, 1, 0).steps_per_epoch == full


def test_every_layer_form_is_registered_by_the_registry_itself():
  code = 'from hyper_ensembles.models import kit; print(sorted(kit.FORMS))'
  env = {**os.environ, 'PYTHONPATH': REPO_ROOT, 'JAX_PLATFORMS': 'cpu'}
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True).stdout
  assert out.strip() == "['batch', 'hyper_batch', 'plain']"


@pytest.mark.parametrize('name', ['batch', 'hyper_batch'])
def test_penalties_off_leaves_the_cross_entropy_alone(name):
  """`create_method(..., penalties=False)` (benchmarks): the same cross-entropy, no penalty."""
  config = smoke_config(name, 'mlp')
  mesh = sharding.create_mesh()
  with_l2 = create_method(config, DIGITS, NUM_TRAIN)
  without = create_method(config, DIGITS, NUM_TRAIN, penalties=False)
  assert with_l2.settings.penalties and not without.settings.penalties
  state, _, _ = create_train_state(with_l2, config, 10, mesh)
  batch = {'images': np.asarray(_split(config.batch_size).images[None]),
           'labels': np.asarray(_split(config.batch_size).labels[None])}
  args = (state.params, state.model_state, state.hparams, state.tuner, batch,
          jax.random.PRNGKey(0))
  loss, (_, metrics) = with_l2.loss(*args)
  loss_ce, (_, metrics_ce) = without.loss(*args)
  assert float(metrics['penalty']) > 0 and float(metrics_ce['penalty']) == 0
  np.testing.assert_allclose(loss, metrics['cross_entropy'] + metrics['penalty'], rtol=1e-6)
  np.testing.assert_allclose(loss_ce, metrics['cross_entropy'], rtol=1e-6)
