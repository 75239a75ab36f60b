"""Hyper-batch-ensemble layers against independent references (docs/design.md §4).

Oracles: an explicit loop over members and examples that materialises each row's weights
W_k(λ) = W∘r_k s_kᵀ + (Δ∘u_k v_kᵀ)·diag(e₁(λ̃)) and bias b_k + e₂(λ̃)∘δ_k (e = λ̃·E) and applies
them with numpy (a direct cross-correlation for convolutions); the batch-ensemble layer for E ≡ 0;
and the brute-force per-example L2 sum mean_{k,i} ν_{k,i}·‖row weights‖² against the layers'
closed form in batch moments. Parameters are replaced by N(0, 1) draws so that zero-initialised
biases and the tiny embedding init cannot hide a term.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper_ensembles.models import hyper_layers, layers
from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit

M, B, D = 3, 4, 2


def _randomize(params, seed: int):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return treedef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _init(layer, x, cond):
  variables = flax.core.unfreeze(layer.init(jax.random.PRNGKey(0), x, cond))
  return flax.linen.meta.unbox(variables['params'])


def _apply(layer, params, x, cond):
  y, state = layer.apply({'params': params}, x, cond, mutable=[layers.PENALTY_COLLECTION])
  penalty = sum(float(v) for v in jax.tree.leaves(state.get(layers.PENALTY_COLLECTION, {})))
  return np.asarray(y, np.float64), penalty


def _cond(seed: int, kernel_nu=True, bias_nu=True) -> Conditioning:
  """Per-example coefficients `[M, B]` and λ̃ `[M, B, D]` (any reals; the layer does not care)."""
  rng = np.random.default_rng(seed)
  hparams = {}
  if kernel_nu:
    hparams['kl2'] = jnp.asarray(rng.uniform(0.1, 3.0, (M, B)), jnp.float32)
  if bias_nu:
    hparams['bl2'] = jnp.asarray(rng.uniform(0.1, 3.0, (M, B)), jnp.float32)
  return Conditioning(hparams, lam_tilde=jnp.asarray(rng.uniform(0, 1, (M, B, D)), jnp.float32))


def _numpy_conv_same(x, kernel):
  """Stride-1 'SAME' NHWC/HWIO cross-correlation of one image `[H, W, C]`, in float64."""
  h, w, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  ph, pw = kh - 1, kw - 1
  x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  out = np.zeros((h, w, c_out))
  for i in range(h):
    for j in range(w):
      out[i, j] = np.einsum('hwc,hwco->o', x[i:i + kh, j:j + kw], kernel)
  return out


def _row_weights(p, cond, k, i, features, fast_in_norm=True):
  """Materialised kernel and bias of row (k, i), float64; `fast_in_norm=False` drops r, s, u, v."""
  f64 = lambda name: np.asarray(p[name], np.float64)
  w, dw, emb = f64('kernel'), f64('delta_kernel'), f64('embedding')
  r, s = f64('fast_in'), f64('fast_out')
  u, v = (f64('delta_fast_in'), f64('delta_fast_out')) if 'delta_fast_in' in p else (r, s)
  h = np.asarray(cond.lam_tilde, np.float64)[k, i]
  if 'embedding_hidden_kernel' in p:  # the non-linear e(λ̃) = E·tanh(A·λ̃ + c)
    h = np.tanh(h @ f64('embedding_hidden_kernel') + f64('embedding_hidden_bias'))
  e = h @ emb
  e1, e2 = e[:features], e[features:]
  if fast_in_norm:
    w_k, dw_k = w * r[k][:, None] * s[k], dw * u[k][:, None] * v[k]
  else:
    w_k, dw_k = w, dw
  kernel = w_k + dw_k * e1  # e₁ scales output columns: Δ_k·diag(e₁)
  bias = f64('bias')[k] + e2 * f64('delta_bias')[k]
  return kernel, bias


@pytest.mark.parametrize('tie_uv, hidden', [(True, 0), (False, 0), (True, 7)])
def test_dense_equals_loop_over_members_and_examples(tie_uv, hidden):
  features = 5
  x = np.random.default_rng(0).normal(size=(M, B, 6)).astype(np.float32)
  cond = _cond(1)
  layer = hyper_layers.HyperBatchEnsembleDense(features, num_members=M, kernel_l2='kl2',
                                               bias_l2='bl2', tie_uv=tie_uv,
                                               embedding_hidden=hidden)
  params = _randomize(_init(layer, x, cond), 2)
  assert ('delta_fast_in' in params) == (not tie_uv)
  assert ('embedding_hidden_kernel' in params) == bool(hidden)
  assert params['embedding'].shape == (hidden or D, 2 * features)
  y, _ = _apply(layer, params, x, cond)
  for k in range(M):
    for i in range(B):
      kernel, bias = _row_weights(params, cond, k, i, features)
      np.testing.assert_allclose(y[k, i], x[k, i].astype(np.float64) @ kernel + bias,
                                 rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('tie_uv', [True, False])
def test_conv_equals_loop_over_members_and_examples(tie_uv):
  features = 3
  x = np.random.default_rng(3).normal(size=(M, B, 5, 5, 2)).astype(np.float32)
  cond = _cond(4)
  layer = hyper_layers.HyperBatchEnsembleConv(features, num_members=M, kernel_size=(3, 3),
                                              kernel_l2='kl2', bias_l2='bl2', tie_uv=tie_uv)
  params = _randomize(_init(layer, x, cond), 5)
  y, _ = _apply(layer, params, x, cond)
  for k in range(M):
    for i in range(B):
      kernel, bias = _row_weights(params, cond, k, i, features)  # HWIO: r over I, s over O
      expected = _numpy_conv_same(x[k, i].astype(np.float64), kernel) + bias
      np.testing.assert_allclose(y[k, i], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kind', ['dense', 'conv'])
def test_zero_embedding_equals_batch_ensemble_layer(kind):
  """With E ≡ 0 the layer is the batch-ensemble layer with the same W, r, s, b — outputs and,
  with the norm taken without fast weights (as batch ensembles regularise), the L2 too."""
  cond = _cond(6)
  be_cond = Conditioning(cond.hparams)
  if kind == 'dense':
    x = np.random.default_rng(7).normal(size=(M, B, 6)).astype(np.float32)
    hyper = hyper_layers.HyperBatchEnsembleDense(4, num_members=M, kernel_l2='kl2', bias_l2='bl2')
    batch = layers.BatchEnsembleDense(4, num_members=M, kernel_l2='kl2', bias_l2='bl2')
  else:
    x = np.random.default_rng(7).normal(size=(M, B, 5, 5, 2)).astype(np.float32)
    hyper = hyper_layers.HyperBatchEnsembleConv(4, num_members=M, kernel_l2='kl2', bias_l2='bl2')
    batch = layers.BatchEnsembleConv(4, num_members=M, kernel_l2='kl2', bias_l2='bl2')
  params = _randomize(_init(hyper, x, cond), 8)
  params['embedding'] = jnp.zeros_like(params['embedding'])
  y_hyper, pen_hyper = _apply(hyper, params, x, cond)
  shared = {k: params[k] for k in ('kernel', 'fast_in', 'fast_out', 'bias')}
  y_batch, pen_batch = _apply(batch, shared, x, be_cond)
  np.testing.assert_allclose(y_hyper, y_batch, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(pen_hyper, pen_batch, rtol=1e-5)


@pytest.mark.parametrize('kind', ['dense', 'conv'])
@pytest.mark.parametrize('fast_in_norm', [False, True])
@pytest.mark.parametrize('terms, hidden', [('both', 0), ('kernel', 0), ('bias', 0), ('both', 7)])
def test_closed_form_l2_equals_per_example_sum(kind, fast_in_norm, terms, hidden):
  features = 4
  cond = _cond(9, kernel_nu=terms != 'bias', bias_nu=terms != 'kernel')
  kwargs = dict(num_members=M, kernel_l2='kl2' if terms != 'bias' else None,
                bias_l2='bl2' if terms != 'kernel' else None, tie_uv=False,
                l2_with_fast_weights=fast_in_norm, embedding_hidden=hidden)
  if kind == 'dense':
    x = np.zeros((M, B, 6), np.float32)
    layer = hyper_layers.HyperBatchEnsembleDense(features, **kwargs)
  else:
    x = np.zeros((M, B, 5, 5, 2), np.float32)
    layer = hyper_layers.HyperBatchEnsembleConv(features, kernel_size=(3, 3), **kwargs)
  params = _randomize(_init(layer, x, cond), 10)
  _, penalty = _apply(layer, params, x, cond)

  expected = 0.0
  for k in range(M):
    for i in range(B):
      kernel, bias = _row_weights(params, cond, k, i, features, fast_in_norm)
      if terms != 'bias':
        expected += float(cond.hparams['kl2'][k, i]) * np.sum(kernel**2)
      if terms != 'kernel':
        expected += float(cond.hparams['bl2'][k, i]) * np.sum(bias**2)
  expected /= M * B  # mean over members of the batch mean
  np.testing.assert_allclose(penalty, expected, rtol=1e-5)


def test_fixed_coefficients_broadcast_over_rows():
  """A per-member `[M, 1]` (or scalar) ν equals the same value repeated for every example."""
  x = np.random.default_rng(11).normal(size=(M, B, 6)).astype(np.float32)
  cond = _cond(12)
  layer = hyper_layers.HyperBatchEnsembleDense(3, num_members=M, kernel_l2='kl2', bias_l2='bl2')
  params = _randomize(_init(layer, x, cond), 13)
  nu = jnp.asarray([0.5, 1.0, 2.0])
  per_member = Conditioning({'kl2': nu[:, None], 'bl2': nu[:, None]}, cond.lam_tilde)
  per_row = Conditioning({'kl2': jnp.broadcast_to(nu[:, None], (M, B)),
                          'bl2': jnp.broadcast_to(nu[:, None], (M, B))}, cond.lam_tilde)
  np.testing.assert_allclose(_apply(layer, params, x, per_member)[1],
                             _apply(layer, params, x, per_row)[1], rtol=1e-6)


def test_fast_weights_are_boxed_and_embedding_init_is_small():
  x = jnp.zeros((M, 1, 6))
  cond = Conditioning({}, lam_tilde=jnp.zeros((M, 1, D)))
  layer = hyper_layers.HyperBatchEnsembleDense(64, num_members=M, tie_uv=False)
  boxed = layer.init(jax.random.PRNGKey(0), x, cond)['params']
  labels = layers.parameter_labels(boxed)
  assert {k for k, v in labels.items() if v == 'fast'} == {
      'fast_in', 'fast_out', 'delta_fast_in', 'delta_fast_out'}
  embedding = np.asarray(flax.linen.meta.unbox(boxed)['embedding'])
  assert embedding.shape == (D, 128) and 0.5e-4 < embedding.std() < 2e-4


def test_kit_builds_the_hyper_batch_form_with_its_options():
  kit = LayerKit(form='hyper_batch', num_members=M, tie_uv=False, embedding_std=0.5,
                 l2_with_fast_weights=True)
  dense, conv = kit.dense(3, kernel_l2='l2'), kit.conv(3, (3, 3))
  assert isinstance(dense, hyper_layers.HyperBatchEnsembleDense)
  assert isinstance(conv, hyper_layers.HyperBatchEnsembleConv)
  assert (dense.tie_uv, dense.embedding_std, dense.l2_with_fast_weights) == (False, 0.5, True)
  assert kit.has_member_axis


def test_missing_lam_tilde_is_a_clear_error():
  layer = hyper_layers.HyperBatchEnsembleDense(2, num_members=M)
  with pytest.raises(ValueError, match='lam_tilde'):
    layer.init(jax.random.PRNGKey(0), jnp.ones((M, 4, 5)), Conditioning({}))
