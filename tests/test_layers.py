"""Layers against independent references: explicit member loops, numpy convolution, hand L2 sums.

The batch-ensemble oracles materialise each member's weights W_k = W ∘ (r_k s_kᵀ) (conv: the kernel
scaled by r_k over input channels and s_k over output channels) and run the member alone, which is
the definition in docs/design.md §3; the layers compute it without materialising anything.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hyper_ensembles.models import layers
from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit
from hyper_ensembles.models.mlp import MLP
from hyper_ensembles.training import optimizers
from tests.conftest import smoke_config

M = 3


def _randomize(params, seed: int):
  """Replaces every parameter by N(0, 1) draws (biases start at zero, which would hide them)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return treedef.unflatten(
      [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _init(layer, x, cond, seed=0):
  variables = flax.core.unfreeze(layer.init(jax.random.PRNGKey(seed), x, cond))
  return flax.linen.meta.unbox(variables['params'])


def _apply(layer, params, x, cond):
  y, state = layer.apply({'params': params}, x, cond, mutable=[layers.PENALTY_COLLECTION])
  penalty = sum(float(v) for v in jax.tree.leaves(state.get(layers.PENALTY_COLLECTION, {})))
  return np.asarray(y, np.float64), penalty


def _numpy_conv(x, kernel, stride, padding):
  """Direct NHWC/HWIO cross-correlation with TF 'SAME' / 'VALID' padding, in float64."""
  x = np.asarray(x, np.float64)
  kernel = np.asarray(kernel, np.float64)
  n, h, w, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  if padding == 'SAME':
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + kh - h, 0)
    pad_w = max((out_w - 1) * stride + kw - w, 0)
    x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                   (0, 0)))
  else:
    out_h, out_w = (h - kh) // stride + 1, (w - kw) // stride + 1
  out = np.zeros((n, out_h, out_w, c_out))
  for i in range(out_h):
    for j in range(out_w):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      out[:, i, j, :] = np.einsum('nhwc,hwco->no', patch, kernel)
  return out


# --- plain layers --------------------------------------------------------------------------------


def test_dense_matches_numpy_and_penalty_is_nu_times_squared_norms():
  x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
  cond = Conditioning({'kl2': jnp.asarray(0.7), 'bl2': jnp.asarray(3.0)})
  layer = layers.Dense(6, kernel_l2='kl2', bias_l2='bl2')
  params = _randomize(_init(layer, x, cond), 1)
  y, penalty = _apply(layer, params, x, cond)
  w, b = np.asarray(params['kernel'], np.float64), np.asarray(params['bias'], np.float64)
  np.testing.assert_allclose(y, x.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(penalty, 0.7 * np.sum(w**2) + 3.0 * np.sum(b**2), rtol=1e-5)


def test_dense_without_l2_names_sows_nothing():
  x = np.ones((2, 3), np.float32)
  layer = layers.Dense(4)
  params = _init(layer, x, Conditioning({}))
  _, state = layer.apply({'params': params}, x, Conditioning({}),
                         mutable=[layers.PENALTY_COLLECTION])
  assert not jax.tree.leaves(state)


@pytest.mark.parametrize('stride,padding', [(1, 'SAME'), (2, 'SAME'), (1, 'VALID'), (2, 'VALID')])
def test_conv_matches_numpy_and_lax(stride, padding):
  x = np.random.default_rng(0).normal(size=(2, 7, 6, 3)).astype(np.float32)
  cond = Conditioning({'l2': jnp.asarray(0.5)})
  layer = layers.Conv(4, kernel_size=(3, 3), strides=(stride, stride), padding=padding,
                      kernel_l2='l2', bias_l2='l2')
  params = _randomize(_init(layer, x, cond), 2)
  y, penalty = _apply(layer, params, x, cond)
  kernel, bias = params['kernel'], params['bias']
  expected = _numpy_conv(x, kernel, stride, padding) + np.asarray(bias, np.float64)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
  via_lax = jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias
  np.testing.assert_allclose(y, via_lax, rtol=1e-5, atol=1e-5)
  expected_penalty = 0.5 * (np.sum(np.float64(kernel) ** 2) + np.sum(np.float64(bias) ** 2))
  np.testing.assert_allclose(penalty, expected_penalty, rtol=1e-5)


def test_conv_accepts_extra_leading_axes():
  x = np.random.default_rng(1).normal(size=(2, 3, 5, 5, 2)).astype(np.float32)
  layer = layers.Conv(3, kernel_size=(3, 3))
  params = _randomize(_init(layer, x, Conditioning({})), 3)
  y, _ = _apply(layer, params, x, Conditioning({}))
  flat, _ = _apply(layer, params, x.reshape(6, 5, 5, 2), Conditioning({}))
  np.testing.assert_allclose(y, flat.reshape(2, 3, 5, 5, 3), rtol=1e-6, atol=1e-6)


# --- batch-ensemble layers -----------------------------------------------------------------------


def _member_cond(kernel_nu, bias_nu):
  return Conditioning({'kl2': jnp.asarray(kernel_nu, jnp.float32)[:, None],
                       'bl2': jnp.asarray(bias_nu, jnp.float32)[:, None]})


def test_batch_ensemble_dense_equals_member_loop_with_materialised_weights():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(M, 4, 5)).astype(np.float32)
  kernel_nu, bias_nu = np.array([0.5, 1.0, 2.0]), np.array([3.0, 0.0, 1.5])
  cond = _member_cond(kernel_nu, bias_nu)
  layer = layers.BatchEnsembleDense(6, num_members=M, kernel_l2='kl2', bias_l2='bl2')
  params = _randomize(_init(layer, x, cond), 4)
  y, penalty = _apply(layer, params, x, cond)

  w = np.asarray(params['kernel'], np.float64)
  r = np.asarray(params['fast_in'], np.float64)
  s = np.asarray(params['fast_out'], np.float64)
  b = np.asarray(params['bias'], np.float64)
  assert w.shape == (5, 6) and r.shape == (M, 5) and s.shape == (M, 6) and b.shape == (M, 6)
  for k in range(M):
    w_k = w * np.outer(r[k], s[k])
    np.testing.assert_allclose(y[k], x[k].astype(np.float64) @ w_k + b[k], rtol=1e-4, atol=1e-5)

  # Shared kernel: ν averaged over members times ‖W‖²; per-member biases: mean_k ν_k·‖b_k‖².
  expected = np.mean(kernel_nu) * np.sum(w**2) + np.mean(bias_nu * np.sum(b**2, axis=1))
  np.testing.assert_allclose(penalty, expected, rtol=1e-5)


@pytest.mark.parametrize('stride,padding', [(1, 'SAME'), (2, 'VALID')])
def test_batch_ensemble_conv_equals_member_loop_with_materialised_weights(stride, padding):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(M, 2, 6, 6, 3)).astype(np.float32)
  kernel_nu, bias_nu = np.array([1.0, 0.25, 4.0]), np.array([0.1, 0.2, 0.3])
  cond = _member_cond(kernel_nu, bias_nu)
  layer = layers.BatchEnsembleConv(4, num_members=M, kernel_size=(3, 3), strides=(stride, stride),
                                   padding=padding, kernel_l2='kl2', bias_l2='bl2')
  params = _randomize(_init(layer, x, cond), 5)
  y, penalty = _apply(layer, params, x, cond)

  w = np.asarray(params['kernel'], np.float64)
  r = np.asarray(params['fast_in'], np.float64)
  s = np.asarray(params['fast_out'], np.float64)
  b = np.asarray(params['bias'], np.float64)
  assert w.shape == (3, 3, 3, 4) and r.shape == (M, 3) and s.shape == (M, 4)
  for k in range(M):
    w_k = w * r[k][None, None, :, None] * s[k][None, None, None, :]
    expected = _numpy_conv(x[k], w_k, stride, padding) + b[k]
    np.testing.assert_allclose(y[k], expected, rtol=1e-4, atol=1e-4)
  expected = np.mean(kernel_nu) * np.sum(w**2) + np.mean(bias_nu * np.sum(b**2, axis=1))
  np.testing.assert_allclose(penalty, expected, rtol=1e-5)


def test_batch_ensemble_rejects_missing_member_axis():
  layer = layers.BatchEnsembleDense(2, num_members=M)
  with pytest.raises(ValueError, match='leading member axis of 3'):
    layer.init(jax.random.PRNGKey(0), jnp.ones((2, 4, 5)), Conditioning({}))


def test_batch_ensemble_mlp_parameter_count_formula():
  """docs/design.md §3: d_in·d_out + M(d_in + 2·d_out) per dense layer (bias per member)."""
  kit = LayerKit(form='batch', num_members=M)
  model = MLP(kit=kit, num_classes=10, hidden=(7, 5))
  x = jnp.zeros((M, 1, 4, 4, 1))
  cond = Conditioning({'l2': jnp.ones((M, 1)), 'dropout': jnp.zeros((M, 1))})
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, cond))['params']
  count = sum(leaf.size for leaf in jax.tree.leaves(flax.linen.meta.unbox(params)))
  expected = sum(d_in * d_out + M * (d_in + 2 * d_out) for d_in, d_out in [(16, 7), (7, 5),
                                                                           (5, 10)])
  assert count == expected


# --- fast weights: init, labels, learning rate ---------------------------------------------------


def test_fast_weight_inits():
  normal = layers.fast_weight_init('normal', 0.5)(jax.random.PRNGKey(0), (200, 100))
  assert isinstance(normal, layers.FastWeight)
  values = np.asarray(normal.value)
  assert abs(values.mean() - 1.0) < 0.02 and abs(values.std() - 0.5) < 0.02
  signs = np.asarray(layers.fast_weight_init('random_sign', 0.5)(
      jax.random.PRNGKey(1), (200, 100)).value)
  assert set(np.unique(signs)) == {-1.0, 1.0}
  assert abs(np.mean(signs == 1.0) - 0.5) < 0.02
  with pytest.raises(ValueError, match='normal, random_sign'):
    layers.fast_weight_init('uniform', 0.5)


def test_parameter_labels_mark_fast_weights_only():
  kit = LayerKit(form='batch', num_members=M)
  model = MLP(kit=kit, num_classes=3, hidden=(4,))
  cond = Conditioning({'l2': jnp.ones((M, 1)), 'dropout': jnp.zeros((M, 1))})
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((M, 1, 2, 2, 1)),
                                            cond))['params']
  labels = layers.parameter_labels(boxed)
  flat = {jax.tree_util.keystr(path): label
          for path, label in jax.tree_util.tree_leaves_with_path(labels)}
  assert flat == {
      f"['{layer}']['{name}']": 'fast' if name.startswith('fast') else 'slow'
      for layer in ('hidden_0', 'logits') for name in ('kernel', 'fast_in', 'fast_out', 'bias')}


@pytest.mark.parametrize('multiplier', [0.5, 0.25])
def test_optimizer_scales_fast_weight_updates(multiplier):
  cfg = smoke_config('batch').optimizer
  with cfg.unlocked():
    cfg.name, cfg.learning_rate, cfg.momentum = 'sgd', 0.1, 0.0
    cfg.fast_weight_lr_multiplier = multiplier
  params = {'kernel': jnp.ones((2, 3)), 'fast_in': jnp.ones((4,))}
  labels = {'kernel': 'slow', 'fast_in': 'fast'}
  tx, schedule = optimizers.create_optimizer(cfg, steps_per_epoch=10, param_labels=labels,
                                             total_steps=100)
  assert float(schedule(0)) == pytest.approx(0.1)
  grads = {'kernel': jnp.full((2, 3), 2.0), 'fast_in': jnp.full((4,), 2.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new['kernel'], 1.0 - 0.1 * 2.0, rtol=1e-6)
  np.testing.assert_allclose(new['fast_in'], 1.0 - multiplier * 0.1 * 2.0, rtol=1e-6)


# --- dropout with array rates --------------------------------------------------------------------


def test_dropout_rate_zero_is_identity():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 50))
  np.testing.assert_array_equal(layers.dropout(jax.random.PRNGKey(1), x, jnp.zeros(3)), x)
  np.testing.assert_array_equal(layers.dropout(jax.random.PRNGKey(1), x, jnp.asarray(0.0)), x)


def test_dropout_per_row_rates_keep_fraction_and_expectation():
  rates = jnp.asarray([0.0, 0.1, 0.5, 0.9])
  d = 100_000
  x = jnp.ones((4, d))
  y = np.asarray(layers.dropout(jax.random.PRNGKey(0), x, rates))
  kept = np.mean(y != 0, axis=1)
  # Binomial std of the kept fraction is at most 0.5/sqrt(d) ≈ 0.0016.
  np.testing.assert_allclose(kept, 1.0 - np.asarray(rates), atol=0.01)
  # Survivors are scaled by 1/keep, so the expected value is preserved (std ≤ 3/sqrt(d)≈0.01).
  np.testing.assert_allclose(y.mean(axis=1), 1.0, atol=0.05)
  for row, rate in enumerate(np.asarray(rates)):
    np.testing.assert_allclose(y[row][y[row] != 0], 1.0 / (1.0 - rate), rtol=1e-6)


def test_dropout_member_rates_broadcast_over_examples_and_features():
  """Batch-ensemble shape: activations [M, B, D], rates [M, 1] (one per member)."""
  rates = jnp.asarray([[0.2], [0.6], [0.0]])
  y = np.asarray(layers.dropout(jax.random.PRNGKey(2), jnp.ones((3, 200, 500)), rates))
  kept = np.mean(y != 0, axis=(1, 2))
  np.testing.assert_allclose(kept, [0.8, 0.4, 1.0], atol=0.01)


def test_dropout_module_is_off_in_eval_mode_and_on_in_train_mode():
  module = layers.Dropout('dropout')
  cond = Conditioning({'dropout': jnp.asarray([[0.5], [0.5]])})
  x = jnp.ones((2, 10, 1000))
  np.testing.assert_array_equal(module.apply({}, x, cond, deterministic=True), x)
  y = np.asarray(module.apply({}, x, cond, deterministic=False,
                              rngs={'dropout': jax.random.PRNGKey(0)}))
  assert 0.45 < np.mean(y == 0) < 0.55
  np.testing.assert_array_equal(layers.Dropout(None).apply({}, x, cond, deterministic=False), x)
