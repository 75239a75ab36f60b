"""The hyper-batch-ensemble method and stn: tune step, train step, prediction, end to end, resume.

Oracles: bitwise comparison of train-state leaves (the tune step may move only t, the train step
never t), the structure of the tune loss (its NLL part reaches t only through the embeddings, so
zero embeddings give an exactly zero gradient and the total gradient is then −τ·∇ mean entropy),
prediction invariances (averaging identical predictives), and an uninterrupted run against a run
stopped mid-way and resumed from its checkpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper_ensembles import train
from hyper_ensembles.data.preprocess import preprocess
from hyper_ensembles.data.streams import TrainStream
from hyper_ensembles.evaluation import predict
from hyper_ensembles.maths import log_uniform as hp
from hyper_ensembles.methods.hyper_batch import HyperBatchEnsemble, SelfTuningNetwork
from hyper_ensembles.methods.registry import create_method, get_method_class
from hyper_ensembles.reporting import hyperparameter_plots as plot
from hyper_ensembles.training import setup as setup_lib
from hyper_ensembles.training import sharding, steps
from tests.conftest import assert_states_equal, restore_state, smoke_config, subprocess_env

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _host(tree):
  return jax.tree.map(lambda x: np.array(jax.device_get(x)), tree)


def _leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope='module')
def setup():
  """A hyper_batch MLP smoke method, its initial state (host copy) and a validation batch."""
  config = smoke_config('hyper_batch', 'mlp')
  parts = setup_lib.build_run(config)
  dataset, method, mesh = parts.dataset, parts.method, parts.mesh
  state, tx, _ = setup_lib.init_state(parts)
  size = config.hyper.validation_batch_size
  local = TrainStream(dataset.validation, size, 1, config.seed).batch(0)
  batch = {k: sharding.to_global(v, mesh, 1) for k, v in local.items()}
  return dict(config=config, dataset=dataset, method=method, mesh=mesh, state=_host(state),
              tx=tx, batch=batch)


def _device_state(setup):
  return jax.device_put(setup['state'], sharding.replicated(setup['mesh']))


def test_registry_and_member_counts(setup):
  assert get_method_class('hyper_batch') is HyperBatchEnsemble
  assert get_method_class('stn') is SelfTuningNetwork
  method = setup['method']
  assert method.num_members == 3 and method.space.names == ('dropout', 'l2')
  dataset = setup['dataset']
  stn = create_method(smoke_config('stn', 'mlp'), dataset.info, dataset.num_train)
  assert stn.num_members == 1


def test_tune_schedule_every_three_steps_after_warmup(setup):
  method = setup['method']
  # Default: no warm-up; tune steps follow train steps 3, 6, 9, ... (0-based steps 2, 5, 8, ...).
  assert [method.tune_index(s) for s in range(7)] == [None, None, 0, None, None, 1, None]
  config = smoke_config('hyper_batch', 'mlp', hyper__tune_warmup_epochs=0.1)
  dataset = setup['dataset']
  warm = create_method(config, dataset.info, dataset.num_train)
  assert warm.tune_warmup_steps == round(0.1 * (dataset.num_train // config.batch_size)) == 4
  assert [s for s in range(13) if warm.tune_index(s) is not None] == [6, 9, 12]
  assert warm.tune_index(12) == 2


def test_tune_step_changes_t_and_nothing_else(setup):
  method = setup['method']
  tune = steps.make_tune_step(method, setup['dataset'].validation, setup['config'].seed,
                              setup['mesh'])
  state = _device_state(setup)
  # Not a tune step: the state is handed back untouched and there are no metrics.
  same, metrics = tune(state, 0)
  assert same is state and metrics == {}
  new, metrics = tune(state, 2)
  new, before = _host(new), setup['state']
  assert set(metrics) == {'tune_loss', 'tune_nll', 'tune_entropy'}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  np.testing.assert_allclose(
      float(metrics['tune_loss']),
      float(metrics['tune_nll']) - method.tau * float(metrics['tune_entropy']), rtol=1e-6)
  for field in ('step', 'params', 'model_state', 'opt_state', 'hparams', 'rng', 'train_seconds'):
    assert _leaves_equal(getattr(new, field), getattr(before, field)), field
  assert not np.array_equal(new.tuner.dist.log_a, before.tuner.dist.log_a)
  assert not np.array_equal(new.tuner.dist.log_b, before.tuner.dist.log_b)
  assert int(new.tuner.opt_state[0].count) == 1
  # Projected: inside the space, b > a.
  log_min, log_max = np.asarray(method.space.log_min), np.asarray(method.space.log_max)
  assert np.all(new.tuner.dist.log_a >= log_min) and np.all(new.tuner.dist.log_b <= log_max)
  assert np.all(new.tuner.dist.log_b > new.tuner.dist.log_a)


def test_train_step_leaves_t_unchanged_and_gets_no_gradient_to_it(setup):
  method = setup['method']
  train_step = jax.jit(steps.make_train_step(method, setup['tx']), donate_argnums=0)
  local = TrainStream(setup['dataset'].train, setup['config'].batch_size, 1, 0).batch(0)
  batch = {k: sharding.to_global(v, setup['mesh'], 1) for k, v in local.items()}
  new, metrics = train_step(_device_state(setup), batch)
  new, before = _host(new), setup['state']
  assert np.isfinite(float(metrics['loss'])) and float(metrics['penalty']) > 0
  assert _leaves_equal(new.tuner, before.tuner)
  assert not _leaves_equal(new.params, before.params)

  # The sampled λ is under stop_gradient: d(train loss)/dt is exactly zero.
  loss = lambda dist: method.loss(before.params, before.model_state, before.hparams,
                                 before.tuner.replace(dist=dist), batch, jax.random.PRNGKey(0))[0]
  grads = jax.jit(jax.grad(loss))(before.tuner.dist)
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def _zero_embeddings(params):
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: jnp.zeros_like(v) if k[-1] == 'embedding' else v for k, v in flat.items()})


def test_tune_gradient_flows_only_through_the_embeddings(setup):
  method, state, batch = setup['method'], setup['state'], setup['batch']
  rng = jax.random.PRNGKey(3)

  @jax.jit
  def grads(params):
    def part(dist, key):
      return method.tune_loss(dist, params, state.model_state, state.hparams, batch, rng)[1][key]
    return (jax.grad(part)(state.tuner.dist, 'tune_nll'),
            jax.grad(part)(state.tuner.dist, 'tune_loss'))

  nll_grad, _ = grads(state.params)
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(nll_grad))
  nll_grad, loss_grad = grads(_zero_embeddings(state.params))
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(nll_grad))
  entropy_grad = jax.grad(hp.mean_entropy)(state.tuner.dist)
  for got, want in zip(jax.tree.leaves(loss_grad), jax.tree.leaves(entropy_grad)):
    np.testing.assert_allclose(got, -method.tau * np.asarray(want), rtol=1e-6)


def test_prediction_at_the_mean_and_with_extra_samples(setup):
  dataset, method, state = setup['dataset'], setup['method'], setup['state']
  # The run's own evaluation step and batch size, so the compiled program is shared with it.
  images = dataset.test.images[:setup['config'].eval_batch_size]
  n = len(images)
  predict_mean = predict.make_eval_step(method, setup['mesh'])
  sampled = create_method(smoke_config('hyper_batch', 'mlp', hyper__eval_samples=3),
                          dataset.info, dataset.num_train)
  predict_sampled = jax.jit(sampled.predict)

  logits = np.asarray(predict_mean(state, images))
  assert logits.shape == (3, n, 10)

  @jax.jit
  def at_mean(state):
    # The model applied directly with λ = each member's distribution mean for every example.
    lam = jnp.broadcast_to(hp.mean(state.tuner.dist)[:, None], (3, n, 2))
    x = jnp.broadcast_to(preprocess(images, dataset.info)[None], (3, *images.shape))
    return method.model.apply({'params': state.params, **state.model_state}, x,
                              method.conditioning(state.hparams, lam), train=False)

  np.testing.assert_allclose(logits, at_mean(state), rtol=1e-5, atol=1e-5)

  log_probs = np.asarray(predict_sampled(state, images))
  assert log_probs.shape == (3, n, 10)
  np.testing.assert_allclose(jax.nn.logsumexp(log_probs, axis=-1), 0.0, atol=1e-5)
  # With zero embeddings λ has no effect: the average of S + 1 equal predictives is that one.
  flat = state.replace(params=_zero_embeddings(state.params))
  np.testing.assert_allclose(np.asarray(predict_sampled(flat, images)),
                             jax.nn.log_softmax(np.asarray(predict_mean(flat, images))), atol=1e-5)


def test_mlp_parameter_count(smoke_run):
  """Per dense layer: W and Δ (2·d_in·d_out), r, s, b (M(d_in + 2·d_out)), δ (M·d_out), E
  (D·2·d_out); the tuner's t is not a model parameter."""
  config = smoke_config('hyper_batch', 'mlp')
  with open(os.path.join(smoke_run('hyper_batch', 'mlp'), 'metrics.json')) as f:
    num_params = json.load(f)['num_params']
  m, d = config.num_members, 2
  dims = [64, *config.model.mlp.hidden, 10]
  assert num_params == sum(2 * i * o + m * (i + 2 * o) + m * o + d * 2 * o
                           for i, o in itertools.pairwise(dims))


def test_config_errors(setup):
  dataset = setup['dataset']
  config = smoke_config('hyper_batch', 'mlp')
  with config.unlocked():
    config.hyper.space.weight_decay = (1e-3, 1.0)
  with pytest.raises(ValueError, match='weight_decay'):
    create_method(config, dataset.info, dataset.num_train)
  with pytest.raises(ValueError, match='whole_range'):
    create_method(smoke_config('hyper_batch', 'mlp', hyper__init='wide'), dataset.info,
                  dataset.num_train)
  with pytest.raises(ValueError, match='log_lambda'):
    create_method(smoke_config('hyper_batch', 'mlp', hyper__entropy='nats'), dataset.info,
                  dataset.num_train)


# The LeNet runs compile two conv networks each (tens of seconds on a busy 2-core CPU): `slow`.
@pytest.mark.parametrize('method,arch', [
    ('hyper_batch', 'mlp'), ('stn', 'mlp'),
    pytest.param('hyper_batch', 'lenet', marks=pytest.mark.slow),
    pytest.param('stn', 'lenet', marks=pytest.mark.slow)])
def test_smoke_run(smoke_run, method, arch):
  workdir = smoke_run(method, arch)
  config = smoke_config(method, arch)
  members = 1 if method == 'stn' else 3
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  assert np.isfinite(metrics['test']['nll']) and len(metrics['test']['member_nll']) == members
  with np.load(os.path.join(workdir, 'predictions', 'test.npz')) as data:
    assert data['logits'].shape == (members, config.max_eval_examples, 10)
  state = restore_state(config, workdir)
  dist = jax.device_get(state.tuner.dist)
  assert dist.log_a.shape == (members, 2)
  assert int(state.tuner.opt_state[0].count) == config.num_train_steps // 3  # tune steps done
  space = hp.HyperparameterSpace.from_config(config.hyper.space)
  assert np.all(dist.log_a >= np.asarray(space.log_min))
  assert np.all(dist.log_b <= np.asarray(space.log_max)) and np.all(dist.log_b > dist.log_a)
  # metrics.json records the learned distributions: exactly the checkpointed bounds and their
  # closed-form means (b − a)/(log b − log a).
  learned = metrics['hyperparameters']
  assert sorted(learned) == sorted(space.names)
  for j, name in enumerate(space.names):
    a, b = np.exp(np.float64(dist.log_a[:, j])), np.exp(np.float64(dist.log_b[:, j]))
    np.testing.assert_allclose(learned[name]['lower'], a, rtol=1e-6)
    np.testing.assert_allclose(learned[name]['upper'], b, rtol=1e-6)
    np.testing.assert_allclose(learned[name]['mean'], (b - a) / np.log(b / a), rtol=1e-5)


def test_small_models_start_log_centred_and_resnets_keep_the_official_init():
  from configs import default, resnet20
  for arch in ('mlp', 'lenet'):
    assert default.get_config(f'method=hyper_batch,arch={arch}').hyper.init == 'log_centred'
  assert resnet20.get_config('method=hyper_batch').hyper.init == 'narrow'


def test_log_centred_tuner_starts_at_the_log_midpoint(setup):
  config = setup['config']
  space = hp.HyperparameterSpace.from_config(config.hyper.space)
  dist = jax.device_get(setup['state'].tuner.dist)
  width = np.log(space.maxs) - np.log(space.mins)
  centre = (np.log(space.mins) + np.log(space.maxs)) / 2
  half = config.hyper.init_half_width * width
  # Centre jitter is 1 % of the log range: 5 standard deviations bound it.
  assert np.all(np.abs((dist.log_a + dist.log_b) / 2 - centre) < 0.05 * width)
  np.testing.assert_allclose(dist.log_b - dist.log_a, np.broadcast_to(2 * half, dist.log_a.shape),
                             rtol=1e-4)


def test_trajectory_plot_from_event_files(smoke_run, tmp_path):
  workdir = smoke_run('hyper_batch', 'mlp')
  trajectories = plot.read_trajectories(workdir)
  assert sorted(trajectories) == ['dropout', 'l2'] and sorted(trajectories['l2']) == ['0', '1', '2']
  config = smoke_config('hyper_batch', 'mlp')
  steps = list(range(config.log_every_steps, config.num_train_steps + 1, config.log_every_steps))
  final = jax.device_get(restore_state(config, workdir).tuner.dist)
  for k in range(3):
    t = trajectories['l2'][str(k)]
    assert t['step'] == steps
    assert all(lo <= mean <= hi for lo, mean, hi in zip(t['lower'], t['mean'], t['upper']))
    j = 1  # 'l2' is column 1 of the sorted space
    np.testing.assert_allclose(t['lower'][-1], np.exp(final.log_a[k, j]), rtol=1e-5)
    np.testing.assert_allclose(t['upper'][-1], np.exp(final.log_b[k, j]), rtol=1e-5)
  out = tmp_path / 'plot.png'
  plot.plot(trajectories, str(out), title='hyper_batch')
  assert out.stat().st_size > 0
  # The command: event files → JSON trajectory → the same picture from the JSON.
  command = [sys.executable, os.path.join(REPO_ROOT, 'scripts', 'plot_hyperparameters.py')]
  run = lambda *args: subprocess.run([*command, *args], env=subprocess_env(), capture_output=True,
                                     text=True, timeout=300)
  proc = run(f'--workdir={workdir}', f'--out={out}', f'--json_out={tmp_path / "t.json"}')
  assert proc.returncode == 0, proc.stderr
  assert json.loads((tmp_path / 't.json').read_text()) == trajectories
  proc = run(f'--trajectory={tmp_path / "t.json"}', f'--out={tmp_path / "p2.png"}')
  assert proc.returncode == 0 and (tmp_path / 'p2.png').stat().st_size > 0, proc.stderr


def test_resume_is_exact_with_the_tuner_in_the_state(smoke_run, tmp_path):
  config = smoke_config('hyper_batch', 'mlp')
  reference = smoke_run('hyper_batch', 'mlp')
  workdir = str(tmp_path / 'resumed')
  # Stop after step 7: between the tune steps that follow steps 6 and 9.
  assert train.train_and_evaluate(config, workdir, stop_after_steps=7) == {}
  assert int(restore_state(config, workdir).step) == 7
  train.train_and_evaluate(config, workdir)
  assert_states_equal(restore_state(config, reference), restore_state(config, workdir))
