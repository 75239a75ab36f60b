"""Tests for hyper_ensembles.maths.predictive: JAX log-mean-exp ensembling against numpy oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper_ensembles.maths import predictive

SHAPES = [(1, 7, 3), (4, 11, 3), (1, 5, 10), (4, 9, 10)]

# Most tests call jitted wrappers: eager dispatch compiles every primitive separately and is ~10x
# slower on CPU. test_jit_and_grad_are_finite compares jitted with eager results.
_log_probs = jax.jit(predictive.ensemble_log_probs)
_nll = jax.jit(predictive.ensemble_nll)


def _random_logits(shape, seed=0, scale=3.0):
  return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _numpy_ensemble_log_probs(logits, weights=None):
  """Oracle: explicit loop over members averaging softmax probabilities, then log."""
  logits = np.asarray(logits, dtype=np.float64)
  num_members = logits.shape[0]
  weights = np.ones(num_members) if weights is None else np.asarray(weights, dtype=np.float64)
  weights = weights / weights.sum()
  p_bar = np.zeros(logits.shape[1:])
  for k in range(num_members):
    e = np.exp(logits[k] - logits[k].max(axis=-1, keepdims=True))
    p_bar += weights[k] * e / e.sum(axis=-1, keepdims=True)
  return np.log(p_bar)


@pytest.mark.parametrize('shape', SHAPES)
def test_member_log_probs_is_log_softmax(shape):
  logits = _random_logits(shape, seed=1)
  got = np.asarray(predictive.member_log_probs(logits))
  e = np.exp(logits.astype(np.float64))
  np.testing.assert_allclose(got, np.log(e / e.sum(-1, keepdims=True)), atol=1e-5)


@pytest.mark.parametrize('shape', SHAPES)
def test_ensemble_log_probs_matches_probability_average(shape):
  logits = _random_logits(shape, seed=2)
  got = np.asarray(_log_probs(logits))
  assert got.shape == shape[1:]
  np.testing.assert_allclose(got, _numpy_ensemble_log_probs(logits), atol=1e-5)


def test_ensemble_is_not_logit_average():
  # Guard against the tempting bug: softmax(mean z) differs from mean softmax(z).
  logits = _random_logits((4, 9, 3), seed=3)
  got = np.asarray(_log_probs(logits))
  wrong = np.asarray(jax.nn.log_softmax(logits.mean(0), axis=-1))
  assert np.max(np.abs(got - wrong)) > 1e-2


@pytest.mark.parametrize('num_classes', [3, 10])
def test_weights_equal_duplicated_members(num_classes):
  logits = _random_logits((2, 13, num_classes), seed=4)
  a, b = logits
  weighted = _log_probs(logits, jnp.array([2.0, 1.0]))
  duplicated = _log_probs(np.stack([a, a, b]))
  np.testing.assert_allclose(weighted, duplicated, atol=1e-6)
  np.testing.assert_allclose(
      weighted, _numpy_ensemble_log_probs(logits, [2.0, 1.0]), atol=1e-5)
  # Unnormalised weights are normalised: scaling them changes nothing.
  np.testing.assert_allclose(
      _log_probs(logits, jnp.array([0.2, 0.1])), weighted, atol=1e-6)


@pytest.mark.parametrize('num_classes', [3, 10])
def test_zero_weight_equals_dropping_member(num_classes):
  logits = _random_logits((4, 8, num_classes), seed=5)
  weights = jnp.array([1.0, 0.0, 3.0, 0.0])
  got = np.asarray(_log_probs(logits, weights))
  assert np.all(np.isfinite(got))
  dropped = _log_probs(logits[[0, 2]], jnp.array([1.0, 3.0]))
  np.testing.assert_allclose(got, dropped, atol=1e-6)
  labels = np.arange(8) % num_classes
  np.testing.assert_allclose(
      _nll(logits, labels, weights),
      _nll(logits[[0, 2]], labels, jnp.array([1.0, 3.0])), atol=1e-6)


def test_single_member_equals_log_softmax():
  logits = _random_logits((1, 10, 10), seed=6)
  np.testing.assert_allclose(
      _log_probs(logits), jax.nn.log_softmax(logits[0], axis=-1), atol=1e-6)


@pytest.mark.parametrize('shape', SHAPES)
def test_ensemble_nll_matches_oracle(shape):
  logits = _random_logits(shape, seed=7)
  labels = np.random.default_rng(8).integers(0, shape[-1], size=shape[1])
  oracle = -np.mean(_numpy_ensemble_log_probs(logits)[np.arange(shape[1]), labels])
  np.testing.assert_allclose(_nll(logits, labels), oracle, rtol=1e-5)


def test_ensemble_nll_mask_averages_selected_rows_only():
  logits = _random_logits((4, 12, 10), seed=9)
  labels = np.random.default_rng(10).integers(0, 10, size=12)
  mask = np.random.default_rng(11).random(12) < 0.5
  mask[0] = True
  padded_labels = np.where(mask, labels, -1)  # Padding rows may hold invalid labels.
  got = _nll(logits, padded_labels, mask=mask)
  expected = _nll(logits[:, mask], labels[mask])
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(
      _nll(logits, padded_labels, mask=mask.astype(np.float32)), expected,
      rtol=1e-6)
  assert float(_nll(logits, labels, mask=np.zeros(12, bool))) == 0.0


def test_jit_and_grad_are_finite():
  logits = jnp.asarray(_random_logits((4, 6, 10), seed=12))
  labels = jnp.asarray(np.arange(6) % 10)
  weights = jnp.array([1.0, 0.0, 2.0, 1.0])
  mask = jnp.array([1, 1, 0, 1, 0, 1])

  loss = jax.jit(predictive.ensemble_nll)
  np.testing.assert_allclose(
      loss(logits, labels, weights, mask), predictive.ensemble_nll(logits, labels, weights, mask),
      rtol=1e-6)

  grad_logits, grad_weights = jax.jit(jax.grad(predictive.ensemble_nll, argnums=(0, 2)))(
      logits, labels, weights, mask)
  assert np.all(np.isfinite(grad_logits)) and np.all(np.isfinite(grad_weights))
  # A zero-weight member does not influence the loss.
  np.testing.assert_array_equal(grad_logits[1], 0.0)
  # Masked-out rows do not either.
  np.testing.assert_array_equal(grad_logits[:, 2], 0.0)

  # Gradient check of the unweighted loss against central finite differences.
  f = jax.jit(lambda z: predictive.ensemble_nll(z, labels))
  g = jax.jit(jax.grad(f))(logits)
  direction = jnp.asarray(np.random.default_rng(13).normal(size=logits.shape), jnp.float32)
  eps = 1e-2
  fd = (f(logits + eps * direction) - f(logits - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(jnp.sum(g * direction), fd, rtol=1e-2, atol=1e-4)


def test_bfloat16_logits_are_upcast():
  logits = _random_logits((4, 5, 10), seed=14)
  got = _log_probs(jnp.asarray(logits, jnp.bfloat16))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
      got, _numpy_ensemble_log_probs(np.asarray(jnp.asarray(logits, jnp.bfloat16), np.float32)),
      atol=1e-5)


def test_bad_weight_shape_raises():
  with pytest.raises(ValueError):
    _log_probs(_random_logits((3, 4, 3)), jnp.ones(2))
