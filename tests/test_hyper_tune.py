"""The hyper-batch tune step against independent oracles (audit of issue 10; docs/hyper_batch.md).

tests/test_hyper_batch.py checks the tune / train step invariants once on the default smoke MLP;
this file pins down what the tuner actually computes, on tiny models whose every setting is given
here explicitly (never the config defaults, which the small-data protocol may change):

- the tune gradient w.r.t. t = (log a, log b) equals a central finite difference of the tune loss
  (float64, fixed u draws), for every (member, hyperparameter) coordinate, and its NLL part is
  non-zero everywhere, i.e. the validation loss reaches t through the embeddings e(λ̃);
- the tune loss equals an explicit computation: λ = exp(log a + u (log b − log a)) per (member,
  example), λ̃ normalised by hand, the model with dropout switched off, log-mean-exp over members
  and the closed-form log-uniform entropy;
- BatchNorm is in evaluation mode in the tune loss (running statistics, no batch coupling), and
  interleaved train / tune steps each move only their own part of the state, batch_stats included;
- the entropy term's sign and the clipping: with the NLL gradient exactly zero, one tune step is
  Adam's first (sign) step on −τ·∇H followed by the official projection, computed here in numpy;
- the L2 penalty enters the train loss divided by N, and the train loss reaches every parameter.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import resnet20 as resnet20_config
from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.streams import steps_per_epoch
from hyper_ensembles.maths import log_uniform as hp
from hyper_ensembles.methods.hyper_batch import TunerState
from hyper_ensembles.methods.registry import create_method
from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.training import sharding, steps
from hyper_ensembles.training.state import create_train_state
from tests.conftest import smoke_config

MLP_SPACE = {'dropout': (1e-3, 0.9), 'l2': (1e-3, 1e3)}  # the paper's MLP / LeNet ranges
RESNET_SPACE = {'l2_group_1': (0.1, 100.0), 'l2_dense_kernel': (0.1, 100.0)}
NUM_TRAIN = 64
BATCH = 6


def _set_hyper(config, space: dict, members: int, **hyper):
  """Every hyper-batch setting the tests rely on, set explicitly."""
  with config.unlocked():
    config.num_members = members
    config.hyper.space = ml_collections.ConfigDict(space)
    settings = dict(tau=1e-3, tune_every_steps=3, tune_warmup_epochs=0.0, tune_learning_rate=1e-3,
                    init='narrow', embedding_std=1e-4, tie_uv=True, l2_with_fast_weights=False,
                    eval_samples=0, validation_batch_size=BATCH)
    settings.update(hyper)
    for key, value in settings.items():
      setattr(config.hyper, key, value)
    config.batch_size = BATCH
    config.optimizer.name = 'adam'
    config.optimizer.learning_rate = 1e-3
    config.optimizer.fast_weight_lr_multiplier = 0.5
    config.optimizer.grad_clip_norm = 0.0
  return config


def _mlp_config(members: int = 3, **hyper):
  config = smoke_config('hyper_batch', 'mlp')
  with config.unlocked():
    config.model.mlp.hidden = (8,)
    config.hparams.l2 = 1.0
    config.hparams.dropout = 0.1
    config.hparams.label_smoothing = 0.0
  return _set_hyper(config, MLP_SPACE, members, **hyper)


def _resnet_config(**hyper):
  config = resnet20_config.get_config('method=hyper_batch,smoke')
  with config.unlocked():
    config.model.resnet20 = ml_collections.ConfigDict({'widths': (4, 4, 4),
                                                       'blocks_per_stage': 1})
  return _set_hyper(config, RESNET_SPACE, 2, **hyper)


def _build(config, info: DatasetInfo, num_train: int = NUM_TRAIN):
  method = create_method(config, info, num_train)
  mesh = sharding.create_mesh()
  state, tx, _ = create_train_state(method, config, steps_per_epoch(num_train, config.batch_size),
                                    mesh)
  return method, jax.device_get(state), tx


def _batch(info: DatasetInfo, seed: int, size: int = BATCH) -> dict:
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (1, size, *info.image_shape), dtype=np.uint8)
  labels = rng.integers(0, info.num_classes, (1, size)).astype(np.int32)
  return {'images': jnp.asarray(images), 'labels': jnp.asarray(labels)}


def _replace_leaves(params, names: tuple[str, ...], fn):
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: fn(k, v) if k[-1] in names else v for k, v in flat.items()})


def _randomize(params, names: tuple[str, ...], std: float, seed: int):
  """`names` leaves replaced by N(0, std²) draws (the tiny embedding init would hide e's effect)."""
  rng = np.random.default_rng(seed)
  return _replace_leaves(params, names, lambda _, v: (std * rng.normal(size=v.shape)).astype(
      np.asarray(v).dtype))


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


TINY = DatasetInfo('tiny', num_classes=4, image_shape=(4, 4, 1), mean=(0.5,), std=(0.25,))
TAU, TUNE_LR = 0.5, 0.05


@pytest.fixture(scope='module')
def mlp():
  """A tiny hyper-batch MLP (M = 3, one hidden layer of 8), its state and jitted steps."""
  method, state, tx = _build(_mlp_config(tau=TAU, tune_learning_rate=TUNE_LR), TINY)
  # Embeddings and δ of O(1), so that λ visibly changes the network.
  params = _randomize(state.params, ('embedding', 'delta_bias'), 0.5, seed=1)
  model = method.model

  @jax.jit
  def apply_train_mode(params, cond, images):
    # Train mode with the penalties sown; dropout acts only where cond's rate is non-zero.
    return model.apply({'params': params}, images, cond, train=True,
                       rngs={'dropout': jax.random.PRNGKey(0)}, mutable=['penalties'])

  return dict(method=method, state=state.replace(params=params), space=method.space,
              m=method.num_members, train_step=jax.jit(steps.make_train_step(method, tx)),
              tune_update=jax.jit(method.tune_update), apply_train_mode=apply_train_mode)


@pytest.fixture(scope='module')
def resnet():
  """A tiny hyper-batch ResNet-20 (M = 2, widths 4, BatchNorm) and its jitted tune step."""
  info = DatasetInfo('tiny_rgb', num_classes=3, image_shape=(8, 8, 3), mean=(0.5,) * 3,
                     std=(0.25,) * 3)
  method, state, _ = _build(_resnet_config(), info)
  params = _randomize(state.params, ('embedding',), 0.5, seed=2)
  return dict(info=info, method=method, state=state.replace(params=params),
              tune_update=jax.jit(method.tune_update))


def _interior_dist(space: hp.HyperparameterSpace, members: int) -> hp.LogUniformParams:
  """Bounds strictly inside the range, different for every (member, hyperparameter)."""
  lo, hi = np.log(space.mins), np.log(space.maxs)
  frac_a = 0.1 + 0.3 * np.random.default_rng(3).uniform(size=(members, space.dim))
  frac_b = frac_a + 0.2 + 0.3 * np.random.default_rng(4).uniform(size=(members, space.dim))
  return hp.LogUniformParams(log_a=lo + frac_a * (hi - lo), log_b=lo + frac_b * (hi - lo))


def _point_dist(space: hp.HyperparameterSpace, lam: np.ndarray) -> hp.LogUniformParams:
  """λ `[M, D]` as distributions of the smallest width the clipping allows (λ then no longer
  depends on the u draws, to ~1e-5 relative)."""
  log_a = jnp.asarray(np.log(lam), jnp.float32)
  return hp.project(hp.LogUniformParams(log_a=log_a, log_b=log_a), space)


def _with_dist(method, state, dist: hp.LogUniformParams):
  return state.replace(tuner=TunerState(dist=dist, opt_state=method.tuner_tx.init(dist)))


def _cond_without_dropout(space: hp.HyperparameterSpace, lam: np.ndarray) -> Conditioning:
  """What the MLP reads at λ `[M, B, D]` with every dropout rate 0: λ̃ normalised by hand."""
  lo, hi = np.log(space.mins), np.log(space.maxs)
  rows = lam.shape[:2]
  return Conditioning(
      hparams={'dropout': jnp.zeros(rows), 'l2': jnp.asarray(lam[..., space.index('l2')],
                                                             jnp.float32),
               'label_smoothing': jnp.zeros(rows)},
      lam_tilde=jnp.asarray((np.log(lam) - lo) / (hi - lo), jnp.float32))


def _tiled_images(batch: dict, members: int) -> jax.Array:
  x = (np.asarray(batch['images'], np.float32) / 255.0 - 0.5) / 0.25  # TINY's normalisation
  return jnp.asarray(np.broadcast_to(x, (members, *x.shape[1:])))


# ---- the tune gradient ----------------------------------------------------------------------

def test_tune_gradient_equals_central_finite_differences_for_every_coordinate(mlp):
  method, state, space, m = mlp['method'], mlp['state'], mlp['space'], mlp['m']
  batch = _batch(TINY, seed=5)
  rng = jax.random.PRNGKey(11)  # fixed u draws: the loss is a deterministic function of t
  with jax.enable_x64(True):
    f64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
    params, hparams = f64(state.params), f64(state.hparams)
    dist = f64(_interior_dist(space, m))

    def parts(d):
      loss, aux = method.tune_loss(d, params, state.model_state, hparams, batch, rng)
      return loss, aux['tune_nll']

    nll = jax.jit(lambda d: parts(d)[1])
    grads = jax.jit(lambda d: (jax.grad(lambda e: parts(e)[0])(d),
                               jax.grad(lambda e: parts(e)[1])(d)))
    loss_grad, nll_grad = grads(dist)
    assert np.asarray(nll_grad.log_a).dtype == np.float64

    la, lb = np.asarray(dist.log_a), np.asarray(dist.log_b)
    r, count = lb - la, m * space.dim
    d_entropy = {'log_a': (0.5 - 1 / r) / count, 'log_b': (0.5 + 1 / r) / count}
    h = 1e-6
    for field in ('log_a', 'log_b'):
      got = np.asarray(getattr(nll_grad, field))
      assert got.shape == (m, space.dim) and np.all(np.isfinite(got))
      # The validation NLL itself reaches every log a and log b (through e(λ̃)).
      assert np.all(np.abs(got) > 1e-6), (field, got)
      base = np.asarray(getattr(dist, field))
      for k in range(m):
        for j in range(space.dim):
          bump = np.zeros_like(base)
          bump[k, j] = h
          plus = float(nll(dist.replace(**{field: jnp.asarray(base + bump)})))
          minus = float(nll(dist.replace(**{field: jnp.asarray(base - bump)})))
          np.testing.assert_allclose(got[k, j], (plus - minus) / (2 * h), rtol=1e-5, atol=1e-9,
                                     err_msg=f'd tune_nll / d {field}[{k}, {j}]')
      # The total is the NLL part minus τ times the closed-form entropy gradient.
      np.testing.assert_allclose(np.asarray(getattr(loss_grad, field)),
                                 got - method.tau * d_entropy[field], rtol=1e-9, atol=1e-12)


def test_tune_loss_equals_explicit_reparameterised_computation(mlp):
  """λ per (member, example) from u, λ̃ by hand, dropout off, log-mean-exp, closed-form entropy."""
  method, state, space, m = mlp['method'], mlp['state'], mlp['space'], mlp['m']
  batch = _batch(TINY, seed=6)
  dist = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), _interior_dist(space, m))
  rng = jax.random.PRNGKey(12)
  _, aux = jax.jit(lambda d: method.tune_loss(d, state.params, state.model_state, state.hparams,
                                              batch, rng))(dist)

  log_a, log_b = np.asarray(dist.log_a, np.float64), np.asarray(dist.log_b, np.float64)
  u = np.asarray(jax.random.uniform(rng, (m, BATCH, space.dim)), np.float64)
  lam = np.exp(log_a[:, None] + u * (log_b - log_a)[:, None])  # [M, B, D]: one per row
  # Train mode with every dropout rate 0 is "dropout off", while the embeddings still see the
  # sampled dropout coordinate through λ̃.
  logits, _ = mlp['apply_train_mode'](state.params, _cond_without_dropout(space, lam),
                                      _tiled_images(batch, m))
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(batch['labels'][0])
  nll = 0.0
  for i in range(BATCH):
    member_log_p = []
    for k in range(m):
      z = logits[k, i]
      member_log_p.append(z[labels[i]] - (z.max() + np.log(np.sum(np.exp(z - z.max())))))
    top = max(member_log_p)
    nll -= top + np.log(np.mean(np.exp(np.asarray(member_log_p) - top)))
  nll /= BATCH
  entropy = np.mean(np.log(log_b - log_a) + (log_a + log_b) / 2)
  np.testing.assert_allclose(float(aux['tune_nll']), nll, rtol=1e-5)
  np.testing.assert_allclose(float(aux['tune_entropy']), entropy, rtol=1e-5)
  np.testing.assert_allclose(float(aux['tune_loss']), nll - method.tau * entropy, rtol=1e-5)


# ---- entropy sign and clipping --------------------------------------------------------------

@pytest.mark.parametrize('init', ['narrow', 'whole_range'])
def test_one_tune_step_is_adams_sign_step_on_the_entropy_then_the_official_clip(mlp, init):
  """Zero embeddings make the NLL gradient exactly zero, so the step is driven by −τ·∇H alone:
  Adam's first step moves each coordinate by −lr·g/(|g| + 1e-8), then log a ∈ [log λ_min,
  log λ_max − 2ε], log b ∈ [log a + ε, log λ_max]. Narrow intervals widen; an interval already
  covering the range is clipped at log λ_max and its lower end rises (H favours large λ)."""
  method, space, m = mlp['method'], mlp['space'], mlp['m']
  if init == 'narrow':
    dist = hp.init_narrow(jax.random.PRNGKey(5), space, m)
  else:
    dist = hp.init_whole_range(space, m)
  params = _replace_leaves(mlp['state'].params, ('embedding',), lambda _, v: np.zeros_like(v))
  state = _with_dist(method, mlp['state'].replace(params=params), dist)
  new, metrics = mlp['tune_update'](state, _batch(TINY, seed=7))
  assert np.isfinite(float(metrics['tune_loss']))
  for field in ('step', 'params', 'model_state', 'opt_state', 'hparams', 'rng'):
    assert _leaves_equal(getattr(new, field), getattr(state, field)), field

  la, lb = np.asarray(dist.log_a, np.float64), np.asarray(dist.log_b, np.float64)
  r, count = lb - la, m * space.dim  # the tune loss uses the mean entropy over [M, D]
  g_a = -TAU * (0.5 - 1 / r) / count  # ∂(−τ·mean H)/∂log a
  g_b = -TAU * (0.5 + 1 / r) / count
  adam = lambda g: -TUNE_LR * g / (np.abs(g) + 1e-8)
  lo, hi = np.log(space.mins), np.log(space.maxs)
  eps = 1e-6 * (hi - lo) / 2
  want_a = np.clip(la + adam(g_a), lo, hi - 2 * eps)
  want_b = np.clip(lb + adam(g_b), want_a + eps, hi)
  got_a, got_b = np.asarray(new.tuner.dist.log_a), np.asarray(new.tuner.dist.log_b)
  np.testing.assert_allclose(got_a, want_a, atol=2e-5)
  np.testing.assert_allclose(got_b, want_b, atol=2e-5)
  assert np.all(got_a >= lo - 1e-6) and np.all(got_b <= hi + 1e-6) and np.all(got_b > got_a)
  j = space.index('l2')
  if init == 'narrow':
    # The L2 interval starts ±0.2 around the range mean (width ≪ 2 log units): it widens by
    # 2·lr, symmetrically in log space.
    assert np.all(r[:, j] < 2)
    np.testing.assert_allclose(got_b[:, j] - got_a[:, j], r[:, j] + 2 * TUNE_LR, atol=2e-5)
  else:
    np.testing.assert_allclose(got_b[:, j], hi[j], atol=1e-6)
    np.testing.assert_allclose(got_a[:, j], lo[j] + TUNE_LR, atol=2e-5)
  assert int(new.tuner.opt_state[0].count) == 1


# ---- state separation and the train loss ----------------------------------------------------

def test_train_and_tune_steps_move_only_their_own_state(mlp):
  """Three train steps with a tune step after the third (tune_every_steps = 3). Train steps
  leave t and the tuner's Adam state bit for bit and move every parameter leaf (W, Δ, r, s, b,
  δ, E: Adam moves a parameter iff its gradient is non-zero); the tune step moves only t."""
  method, state = mlp['method'], mlp['state']
  names = {k[-1] for k in flax.traverse_util.flatten_dict(state.params)}
  assert {'kernel', 'delta_kernel', 'fast_in', 'fast_out', 'bias', 'delta_bias',
          'embedding'} <= names
  tune_steps = 0
  for step in range(3):
    before = state
    state, metrics = mlp['train_step'](state, _batch(TINY, seed=20 + step))
    assert np.isfinite(float(metrics['loss'])) and float(metrics['penalty']) > 0
    assert _leaves_equal(state.tuner, before.tuner), step
    old = flax.traverse_util.flatten_dict(before.params)
    for path, value in flax.traverse_util.flatten_dict(state.params).items():
      value = np.asarray(value)
      assert np.all(np.isfinite(value)) and np.any(value != np.asarray(old[path])), (step, path)
    if method.tune_index(step) is None:
      continue
    before = state
    state, _ = mlp['tune_update'](state, _batch(TINY, seed=40 + step))
    tune_steps += 1
    for field in ('step', 'params', 'model_state', 'opt_state', 'hparams', 'rng'):
      assert _leaves_equal(getattr(state, field), getattr(before, field)), (step, field)
    assert not _leaves_equal(state.tuner.dist.log_a, before.tuner.dist.log_a)
    assert not _leaves_equal(state.tuner.dist.log_b, before.tuner.dist.log_b)
  assert tune_steps == 1 and int(state.tuner.opt_state[0].count) == 1


def test_l2_penalty_enters_the_train_loss_divided_by_n(mlp):
  """At a point-mass λ the train step's penalty is Σ_layers (closed-form L2 the layers sow at
  that λ) / N with N = the method's number of training examples."""
  method, space, m = mlp['method'], mlp['space'], mlp['m']
  values = {'dropout': 0.2, 'l2': 30.0}
  lam = np.broadcast_to(np.asarray([values[n] for n in space.names]), (m, space.dim))
  dist = _point_dist(space, lam)
  state = _with_dist(method, mlp['state'], dist)
  batch = _batch(TINY, seed=9)
  _, metrics = mlp['train_step'](state, batch)
  rows = np.broadcast_to(np.exp(np.asarray(dist.log_a, np.float64))[:, None], (m, BATCH, 2))
  _, sown = mlp['apply_train_mode'](state.params, _cond_without_dropout(space, rows),
                                    _tiled_images(batch, m))
  total = sum(float(np.sum(x)) for x in jax.tree.leaves(sown['penalties']))
  assert method.num_train == NUM_TRAIN and total > 0
  np.testing.assert_allclose(float(metrics['penalty']), total / NUM_TRAIN, rtol=1e-4)


# ---- BatchNorm: eval mode in the tune loss, running statistics untouched ----------------------

def test_tune_step_uses_batchnorm_running_statistics_and_leaves_them_untouched(resnet):
  """In eval mode an example's loss does not depend on the other examples of the batch: swapping
  the second half changes the NLL by the same amount whatever the first half is (train-mode BN
  would couple the halves). Shifted running statistics change the loss; the step leaves them
  (and every parameter) bit for bit as they were."""
  method, info, tune_update = resnet['method'], resnet['info'], resnet['tune_update']
  space, m = method.space, method.num_members
  assert jax.tree.leaves(resnet['state'].model_state['batch_stats'])
  state = _with_dist(method, resnet['state'],
                     _point_dist(space, np.broadcast_to(np.asarray(space.mins) * 3.0,
                                                        (m, space.dim))))
  x, y, z = (_batch(info, seed=s) for s in (30, 31, 32))
  half = BATCH // 2
  mix = lambda first, second: {k: jnp.concatenate([first[k][:, :half], second[k][:, half:]],
                                                   axis=1) for k in first}

  def nll(state, batch):
    new, metrics = tune_update(state, batch)
    for field in ('step', 'params', 'model_state', 'opt_state', 'hparams', 'rng'):
      assert _leaves_equal(getattr(new, field), getattr(state, field)), field
    return float(metrics['tune_nll'])

  a, b = nll(state, x), nll(state, mix(x, y))
  c, d = nll(state, mix(z, x)), nll(state, mix(z, y))
  assert abs(a - b) > 1e-4
  np.testing.assert_allclose(a - b, c - d, atol=1e-5)
  shifted = state.replace(model_state=jax.tree.map(lambda v: v + 1.0, state.model_state))
  assert abs(nll(shifted, x) - a) > 1e-4
