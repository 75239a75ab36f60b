"""Tests for hyper_ensembles.maths.log_uniform: spaces, normalisation and the log-uniform
distributions.

The oracles are independent of the implementation: numerical integration (scipy.integrate.quad)
for means and entropies, Monte Carlo with tolerances derived from the standard error (fixed seeds),
float64 finite differences for gradients, and invariants for the projection and initialisers.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import integrate, stats

from hyper_ensembles.maths import log_uniform

# Ranges from docs/design.md §6: hyper-batch L2, MLP dropout, MLP L2, hyper-deep label smoothing.
RANGES = {'l2': (0.1, 100.0), 'dropout': (1e-3, 0.9), 'mlp_l2': (1e-3, 1e3), 'ls': (1e-5, 0.2)}


# Jitted once here: one compile is much cheaper than eager op-by-op dispatch, and it checks that the
# initialiser is traceable with the space, M and the floats as static arguments.
_init_narrow = jax.jit(
    log_uniform.init_narrow, static_argnames=('space', 'num_members', 'width', 'std'))


def _space():
  return log_uniform.HyperparameterSpace.from_config(RANGES)


def _params(log_a, log_b):
  return log_uniform.LogUniformParams(
      log_a=jnp.asarray(log_a, jnp.float32), log_b=jnp.asarray(log_b, jnp.float32))


def _quad_mean(a, b):
  """E[λ] of log-U[a, b] by integrating λ·p(λ)."""
  r = math.log(b) - math.log(a)
  return integrate.quad(lambda x: x / (x * r), a, b, epsabs=0, epsrel=1e-12)[0]


def _quad_entropy(a, b):
  """−∫ p log p over [a, b] with p(λ) = 1/(λ (log b − log a))."""
  r = math.log(b) - math.log(a)
  p = lambda x: 1.0 / (x * r)
  # Break the interval geometrically so quad resolves the 1/λ peak at a for wide ranges.
  points = np.geomspace(a, b, 9)
  return sum(
      integrate.quad(lambda x: -p(x) * math.log(p(x)), lo, hi, epsabs=0, epsrel=1e-12)[0]
      for lo, hi in itertools.pairwise(points))


def _assert_valid(params, space):
  log_a, log_b = np.asarray(params.log_a), np.asarray(params.log_b)
  log_min, log_max = np.asarray(space.log_min), np.asarray(space.log_max)
  assert np.all(np.isfinite(log_a)) and np.all(np.isfinite(log_b))
  assert np.all(log_a >= log_min) and np.all(log_b <= log_max)
  assert np.all(log_b > log_a)
  assert np.all(np.isfinite(np.asarray(log_uniform.entropy(params))))


# ---------------------------------------------------------------------------------------------
# HyperparameterSpace


def test_space_from_plain_mapping_and_config_dict_agree():
  plain = log_uniform.HyperparameterSpace.from_config(RANGES)
  cfg = ml_collections.ConfigDict(
      {name: {'min': lo, 'max': hi} for name, (lo, hi) in RANGES.items()})
  from_cfg = log_uniform.HyperparameterSpace.from_config(cfg)
  assert plain == from_cfg and hash(plain) == hash(from_cfg)
  assert plain.names == tuple(sorted(RANGES))
  assert plain.dim == 4
  assert plain.scales == ('log',) * 4
  for j, name in enumerate(plain.names):
    assert plain.index(name) == j
    np.testing.assert_allclose(plain.log_min[j], math.log(RANGES[name][0]), rtol=1e-6)
    np.testing.assert_allclose(plain.log_max[j], math.log(RANGES[name][1]), rtol=1e-6)
  assert plain.log_min.shape == plain.log_max.shape == (4,)


def test_space_mixed_entry_forms_and_frozen_config():
  cfg = ml_collections.ConfigDict({'b': (1e-2, 1.0), 'a': {'min': 1, 'max': 10, 'scale': 'log'}})
  space = log_uniform.HyperparameterSpace.from_config(ml_collections.FrozenConfigDict(cfg))
  assert space.names == ('a', 'b')
  assert space.mins == (1.0, 1e-2) and space.maxs == (10.0, 1.0)
  space3 = log_uniform.HyperparameterSpace.from_config({'x': [0.5, 2, 'log']})
  assert space3.names == ('x',) and space3.maxs == (2.0,)


@pytest.mark.parametrize(
    'config, fragments',
    [
        ({'l2': (0.0, 1.0)}, ["'l2'", 'min', '0.0']),
        ({'l2': (-1.0, 1.0)}, ["'l2'", '-1.0']),
        ({'dropout': (0.5, 0.5)}, ["'dropout'", 'max', '0.5']),
        ({'ok': (1, 2), 'dropout': (0.9, 0.1)}, ["'dropout'", '0.9', '0.1']),
        ({'l2': (1e-3, float('inf'))}, ["'l2'", 'inf']),
        ({'l2': (float('nan'), 1.0)}, ["'l2'", 'nan']),
        ({'l2': ('a', 1.0)}, ["'l2'", "'a'"]),
        ({'l2': {'min': 1.0, 'max': 2.0, 'scale': 'linear'}}, ["'l2'", 'scale', "'linear'"]),
        ({'l2': {'min': 1.0}}, ["'l2'", 'max']),
        ({'l2': (1.0,)}, ["'l2'"]),
        ({'l2': 3.0}, ["'l2'", '3.0']),
        ({}, ['at least one']),
    ],
)
def test_space_validation_errors_name_the_hyperparameter(config, fragments):
  with pytest.raises(ValueError) as err:
    log_uniform.HyperparameterSpace.from_config(config)
  for fragment in fragments:
    assert fragment in str(err.value)


def test_space_index_unknown_name_and_static_jit_argument():
  space = _space()
  with pytest.raises(KeyError, match='nope'):
    space.index('nope')
  # Hashable and value-compared, so it can be a static argument without retracing on equal spaces.
  traces = []

  def f(lam, space):
    traces.append(None)
    return log_uniform.normalize(space, lam)

  f_jit = jax.jit(f, static_argnums=1)
  lam = jnp.ones((2, space.dim))
  f_jit(lam, space)
  f_jit(lam, log_uniform.HyperparameterSpace.from_config(dict(RANGES)))
  assert len(traces) == 1


def test_space_constructor_keeps_order_and_validates():
  space = log_uniform.HyperparameterSpace(names=('z', 'a'), mins=(1, 2), maxs=(3, 4))
  assert space.names == ('z', 'a') and space.scales == ('log', 'log')
  with pytest.raises(ValueError, match='unique'):
    log_uniform.HyperparameterSpace(names=('z', 'z'), mins=(1, 2), maxs=(3, 4))
  with pytest.raises(ValueError, match='lengths'):
    log_uniform.HyperparameterSpace(names=('z',), mins=(1, 2), maxs=(3, 4))


# ---------------------------------------------------------------------------------------------
# normalize


def test_normalize_endpoints_midpoint_and_monotone():
  space = _space()
  mins, maxs = np.asarray(space.mins), np.asarray(space.maxs)
  np.testing.assert_allclose(log_uniform.normalize(space, jnp.asarray(mins)), 0.0, atol=1e-6)
  np.testing.assert_allclose(log_uniform.normalize(space, jnp.asarray(maxs)), 1.0, atol=1e-6)
  np.testing.assert_allclose(
      log_uniform.normalize(space, jnp.asarray(np.sqrt(mins * maxs))), 0.5, atol=1e-6)
  # A log-spaced grid [G, D] is an affine image of an evenly spaced one: strictly increasing.
  grid = np.geomspace(mins, maxs, 257)
  out = np.asarray(log_uniform.normalize(space, jnp.asarray(grid, jnp.float32)))
  assert out.shape == grid.shape
  assert np.all(np.diff(out, axis=0) > 0)
  # Broadcasting over several leading axes.
  lam = jnp.broadcast_to(jnp.asarray(np.sqrt(mins * maxs), jnp.float32), (3, 5, space.dim))
  np.testing.assert_allclose(log_uniform.normalize(space, lam), 0.5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# mean, entropy, sample

# (a, b) pairs: wide, narrow in log space (series branch), around the series threshold, and the
# narrow ResNet initialisation around the [0.1, 100] range mean.
BOUNDS = [(1e-3, 1e3), (0.1, 100.0), (1e-5, 0.2), (14.26, 14.66), (2.0, 2.0 * math.exp(0.0099)),
          (2.0, 2.0 * math.exp(0.0101)), (0.5, 0.5 * math.exp(1e-4))]


def test_mean_matches_numerical_integration():
  a, b = np.array(BOUNDS).T
  got = np.asarray(log_uniform.mean(_params(np.log(a), np.log(b))))
  want = np.array([_quad_mean(lo, hi) for lo, hi in BOUNDS])
  np.testing.assert_allclose(got, want, rtol=2e-5)


def test_mean_is_safe_at_zero_width():
  log_a = jnp.asarray([[-3.0, 0.0, 2.5]])
  params = log_uniform.LogUniformParams(log_a=log_a, log_b=log_a)
  np.testing.assert_allclose(log_uniform.mean(params), jnp.exp(log_a), rtol=1e-6)
  grads = jax.grad(lambda p: log_uniform.mean(p).sum())(params)
  # d mean / d log a = d mean / d log b = a/2 at b = a (limit of the closed form).
  np.testing.assert_allclose(grads.log_a, jnp.exp(log_a) / 2, rtol=1e-5)
  np.testing.assert_allclose(grads.log_b, jnp.exp(log_a) / 2, rtol=1e-5)


def test_mean_gradient_matches_finite_differences():
  log_a, log_b = np.log(np.array(BOUNDS).T)

  def oracle(la, lb):  # float64 a·expm1(r)/r, an independent form of the closed-form mean
    r = lb - la
    return np.exp(la) * np.expm1(r) / r

  h = 1e-6
  fd_a = (oracle(log_a + h, log_b) - oracle(log_a - h, log_b)) / (2 * h)
  fd_b = (oracle(log_a, log_b + h) - oracle(log_a, log_b - h)) / (2 * h)
  grads = jax.grad(lambda p: log_uniform.mean(p).sum())(_params(log_a, log_b))
  np.testing.assert_allclose(grads.log_a, fd_a, rtol=2e-3)
  np.testing.assert_allclose(grads.log_b, fd_b, rtol=2e-3)


def test_entropy_matches_numerical_integration():
  a, b = np.array(BOUNDS[:5]).T
  params = _params(np.log(a), np.log(b))
  got = np.asarray(log_uniform.entropy(params))
  want = np.array([_quad_entropy(lo, hi) for lo, hi in BOUNDS[:5]])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(log_uniform.mean_entropy(params), want.mean(), rtol=1e-4, atol=1e-4)


def test_mean_entropy_averages_over_members_and_coordinates():
  rng = np.random.default_rng(0)
  log_a = rng.normal(size=(3, 4))
  params = _params(log_a, log_a + rng.uniform(0.1, 3.0, size=(3, 4)))
  assert log_uniform.entropy(params).shape == (3, 4)
  assert log_uniform.mean_entropy(params).shape == ()
  np.testing.assert_allclose(
      log_uniform.mean_entropy(params), np.mean(log_uniform.entropy(params)), rtol=1e-6)


def _second_moment(a, b):
  return (b**2 - a**2) / (2 * (math.log(b) - math.log(a)))


def test_sample_moments_and_support_monte_carlo():
  bounds = np.array(BOUNDS[:4])  # [M=4] members, D=1; and D=2 by pairing with reversed order
  a = np.stack([bounds[:, 0], bounds[::-1, 0]], axis=1)
  b = np.stack([bounds[:, 1], bounds[::-1, 1]], axis=1)
  params = _params(np.log(a), np.log(b))
  n = 200_000
  lam = np.asarray(log_uniform.sample(jax.random.PRNGKey(0), params, n), np.float64)
  assert lam.shape == (4, n, 2)
  want_mean = np.vectorize(_quad_mean)(a, b)
  want_std = np.sqrt(np.vectorize(_second_moment)(a, b) - want_mean**2)
  np.testing.assert_array_less(np.abs(lam.mean(axis=1) - want_mean), 5 * want_std / np.sqrt(n))
  # Support: inside [a, b] up to float32 rounding, and reaching both ends: with n uniform draws
  # the extreme u is within 20/n of 0 and 1 except with probability e^-20.
  r = np.log(b) - np.log(a)
  assert np.all(lam.min(axis=1) >= a * (1 - 1e-6))
  assert np.all(lam.max(axis=1) <= b * (1 + 1e-6))
  assert np.all(lam.min(axis=1) <= a * np.exp(r * 20 / n) * (1 + 1e-6))
  assert np.all(lam.max(axis=1) >= b * np.exp(-r * 20 / n) * (1 - 1e-6))
  # Log-uniform: log λ is uniform on [log a, log b].
  u = (np.log(lam[0, :, 0]) - np.log(a[0, 0])) / r[0, 0]
  assert stats.kstest(u, 'uniform').pvalue > 1e-4


def test_sample_mean_gradient_matches_finite_differences_of_closed_form():
  a, b = np.array(BOUNDS[:4]).T
  log_a, log_b = np.log(a)[:, None], np.log(b)[:, None]  # [M=4, D=1]
  n = 200_000
  key = jax.random.PRNGKey(1)
  grads = jax.grad(lambda p: log_uniform.sample(key, p, n).mean(axis=1).sum())(_params(log_a,
  log_b))

  def closed(la, lb):
    return (np.exp(lb) - np.exp(la)) / (lb - la)

  h = 1e-6
  fd_a = (closed(log_a + h, log_b) - closed(log_a - h, log_b)) / (2 * h)
  fd_b = (closed(log_a, log_b + h) - closed(log_a, log_b - h)) / (2 * h)
  # The per-sample derivatives λ(1 − u) and λu lie in [0, b], so their std is at most b/2.
  tol = 5 * (b[:, None] / 2) / np.sqrt(n)
  np.testing.assert_array_less(np.abs(np.asarray(grads.log_a) - fd_a), tol)
  np.testing.assert_array_less(np.abs(np.asarray(grads.log_b) - fd_b), tol)


def test_sample_is_jittable_and_reproducible():
  params = log_uniform.init_whole_range(_space(), 3)
  f = jax.jit(log_uniform.sample, static_argnums=2)
  first = f(jax.random.PRNGKey(3), params, 7)
  np.testing.assert_array_equal(first, f(jax.random.PRNGKey(3), params, 7))
  assert first.shape == (3, 7, 4)
  assert not np.array_equal(first, f(jax.random.PRNGKey(4), params, 7))


# ---------------------------------------------------------------------------------------------
# project and initialisation


def test_project_adversarial_inputs_are_valid_and_idempotent():
  space = _space()
  log_min, log_max = np.asarray(space.log_min), np.asarray(space.log_max)
  mid = (log_min + log_max) / 2
  big = 1e30
  rows_a = [mid + 1, log_min - 5, log_max + 5, log_max, log_min - 5, np.full(4, -np.inf),
            np.full(4, np.inf), np.full(4, big), mid, log_max]
  rows_b = [mid - 1, log_min - 7, log_max + 9, log_max, log_max + 5, np.full(4, np.inf),
            np.full(4, -np.inf), np.full(4, -big), mid, log_min]
  params = _params(np.stack(rows_a), np.stack(rows_b))
  projected = log_uniform.project(params, space)
  _assert_valid(projected, space)
  again = log_uniform.project(projected, space)
  np.testing.assert_array_equal(again.log_a, projected.log_a)
  np.testing.assert_array_equal(again.log_b, projected.log_b)
  # The gap when everything collapses is the documented ε = 1e-6·(log range)/2, not more.
  eps = 1e-6 * (log_max - log_min) / 2
  gap = np.asarray(projected.log_b - projected.log_a)
  assert np.all(gap[3] <= 3 * eps * 1.01)  # a = b = λ_max: a moves down by 2ε
  np.testing.assert_allclose(gap[8], eps, rtol=0.2)  # a = b mid-range: b moves up by ε


def test_project_leaves_valid_params_unchanged_and_is_jittable():
  space = _space()
  log_min, log_max = np.asarray(space.log_min), np.asarray(space.log_max)
  params = _params(log_min + 0.25 * (log_max - log_min), log_min + 0.75 * (log_max - log_min))
  projected = jax.jit(log_uniform.project, static_argnums=1)(params, space)
  np.testing.assert_array_equal(projected.log_a, params.log_a)
  np.testing.assert_array_equal(projected.log_b, params.log_b)


def test_project_keeps_b_above_a_for_a_very_narrow_space():
  # The relative ε would be below float32 resolution here; the ulp floor keeps b > a.
  space = log_uniform.HyperparameterSpace.from_config({'x': (1000.0, 1000.0 * (1 + 1e-5))})
  log_a = jnp.full((2, 1), 100.0)
  projected = log_uniform.project(log_uniform.LogUniformParams(log_a=log_a, log_b=log_a), space)
  _assert_valid(projected, space)


def test_init_narrow_is_valid_and_centred_on_the_range_mean():
  space = log_uniform.HyperparameterSpace.from_config({'l2': (0.1, 100.0), 'big': (1.0, 1e4)})
  width, std, members = 0.2, 0.02, 64
  params = _init_narrow(jax.random.PRNGKey(0), space, members, width=width, std=std)
  assert params.log_a.shape == params.log_b.shape == (members, 2)
  _assert_valid(params, space)
  a, b = np.exp(np.asarray(params.log_a, np.float64)), np.exp(np.asarray(params.log_b, np.float64))
  centre = np.array([_quad_mean(lo, hi) for lo, hi in zip(space.mins, space.maxs)])
  # Here nothing is clipped: the interval is [λ₀ − width, λ₀ + width] in λ space, λ₀ ~ N(m, std).
  # Tolerance: a float32 log near log 1085 ≈ 7 resolves λ only to ~5e-4 absolute.
  np.testing.assert_allclose(b - a, 2 * width, atol=2e-3)
  lam0 = (a + b) / 2
  assert np.all(np.abs(lam0 - centre) < 5 * std)
  # λ₀ really is random around m: its empirical std over 64 members is near `std`.
  assert 0.6 * std < lam0.std(axis=0).min() and lam0.std(axis=0).max() < 1.5 * std
  np.testing.assert_allclose(
      np.asarray(log_uniform.mean(params)), np.broadcast_to(centre, (members, 2)), atol=5 * std +
      1e-3)
  # Reproducible for a fixed key.
  again = _init_narrow(jax.random.PRNGKey(0), space, members, width=width, std=std)
  np.testing.assert_array_equal(again.log_a, params.log_a)


def test_init_narrow_clips_when_the_range_is_small():
  # MLP dropout [1e-3, 0.9] has m ≈ 0.13 < width, so a = 1e-8 before the projection.
  space = log_uniform.HyperparameterSpace.from_config({'dropout': (1e-3, 0.9), 'ls': (1e-5, 0.2)})
  params = _init_narrow(jax.random.PRNGKey(1), space, 3)
  _assert_valid(params, space)
  np.testing.assert_allclose(params.log_a, np.broadcast_to(space.log_min, (3, 2)), rtol=1e-6)


def test_init_whole_range_covers_the_range():
  space = _space()
  params = log_uniform.init_whole_range(space, 5)
  assert params.log_a.shape == (5, 4)
  _assert_valid(params, space)
  np.testing.assert_allclose(np.exp(params.log_a), np.broadcast_to(space.mins, (5, 4)), rtol=1e-5)
  np.testing.assert_allclose(np.exp(params.log_b), np.broadcast_to(space.maxs, (5, 4)), rtol=1e-5)


def test_tune_style_update_is_finite():
  # The tune loss differentiates mean entropy and samples; after a step, projection re-validates.
  space = _space()
  params = _init_narrow(jax.random.PRNGKey(2), space, 4)

  def loss(p):
    lam = log_uniform.sample(jax.random.PRNGKey(3), p, 16)
    return jnp.mean(log_uniform.normalize(space, lam) ** 2) - 1e-3 * log_uniform.mean_entropy(p)

  grads = jax.jit(jax.grad(loss))(params)
  assert np.all(np.isfinite(grads.log_a)) and np.all(np.isfinite(grads.log_b))
  stepped = jax.tree_util.tree_map(lambda p, g: p - 10.0 * g, params, grads)
  _assert_valid(log_uniform.project(stepped, space), space)


# ---------------------------------------------------------------------------------------------
# random_search


def test_random_search_is_log_uniform_over_the_space():
  space = _space()
  n = 20_000
  lam = np.asarray(log_uniform.random_search(0, space, n), np.float64)
  assert lam.shape == (n, space.dim)
  mins, maxs = np.asarray(space.mins), np.asarray(space.maxs)
  assert np.all(lam >= mins * (1 - 1e-6)) and np.all(lam <= maxs * (1 + 1e-6))
  below = (lam < np.sqrt(mins * maxs)).mean(axis=0)
  np.testing.assert_array_less(np.abs(below - 0.5), 5 * 0.5 / np.sqrt(n))
  # A plain uniform over [min, max] would put far fewer than half below the geometric midpoint;
  # check the whole distribution of the normalised values, not just one quantile.
  normalized = np.asarray(log_uniform.normalize(space, jnp.asarray(lam, jnp.float32)))
  for j in range(space.dim):
    assert stats.kstest(normalized[:, j], 'uniform').pvalue > 1e-4


def test_random_search_is_reproducible():
  space = _space()
  first = log_uniform.random_search(7, space, 10)
  np.testing.assert_array_equal(first, log_uniform.random_search(7, space, 10))
  np.testing.assert_array_equal(first, log_uniform.random_search(np.int64(7), space, 10))
  np.testing.assert_array_equal(first, log_uniform.random_search(jax.random.PRNGKey(7), space, 10))
  assert not np.array_equal(first, log_uniform.random_search(8, space, 10))


# ---------------------------------------------------------------------------------------------
# Log-centred initialisation and the entropy of log λ (the small-model protocol, issue 10)

_init_log_centred = jax.jit(
    log_uniform.init_log_centred,
    static_argnames=('space', 'num_members', 'half_width', 'std', 'spread'))


def test_init_log_centred_sits_on_the_log_midpoint_with_the_asked_width():
  space = _space()
  params = _init_log_centred(jax.random.PRNGKey(0), space, 4, half_width=0.05, std=0.0)
  _assert_valid(params, space)
  log_min, log_max = np.log(space.mins), np.log(space.maxs)
  # The median of log-U[λ_min, λ_max] is exp of the log midpoint: the oracle is plain numpy.
  np.testing.assert_allclose((params.log_a + params.log_b) / 2,
                             np.broadcast_to((log_min + log_max) / 2, (4, 4)), atol=1e-5)
  np.testing.assert_allclose(params.log_b - params.log_a,
                             np.broadcast_to(0.1 * (log_max - log_min), (4, 4)), atol=1e-5)
  # On the MLP L2 range [1e-3, 1e3] the start is ν ∈ [0.50, 2.0], not the official 72.
  j = space.index('mlp_l2')
  assert 0.49 < float(np.exp(params.log_a[0, j])) < 0.51
  assert 1.99 < float(np.exp(params.log_b[0, j])) < 2.01


def test_init_log_centred_spread_orders_members_evenly_and_jitter_is_random():
  space = _space()
  spread, members = 0.3, 5
  params = _init_log_centred(jax.random.PRNGKey(1), space, members, half_width=0.02, std=0.0,
                             spread=spread)
  _assert_valid(params, space)
  centres = np.asarray((params.log_a + params.log_b) / 2, np.float64)
  width = np.log(space.maxs) - np.log(space.mins)
  steps = np.diff(centres, axis=0)
  np.testing.assert_allclose(steps, np.broadcast_to(spread * width / (members - 1), steps.shape),
                             rtol=1e-4)
  jittered = _init_log_centred(jax.random.PRNGKey(1), space, 64, half_width=0.02, std=0.01)
  c = np.asarray((jittered.log_a + jittered.log_b) / 2, np.float64)
  relative_std = c.std(axis=0) / width
  assert relative_std.min() > 0.6 * 0.01 and relative_std.max() < 1.5 * 0.01


def test_init_log_centred_projects_an_interval_wider_than_the_range():
  space = _space()
  params = _init_log_centred(jax.random.PRNGKey(2), space, 3, half_width=0.8, std=0.0)
  _assert_valid(params, space)
  np.testing.assert_allclose(params.log_a, np.broadcast_to(space.log_min, (3, 4)), rtol=1e-6)
  np.testing.assert_allclose(params.log_b, np.broadcast_to(space.log_max, (3, 4)), rtol=1e-6)


def _quad_log_entropy(a, b):
  """−∫ q log q over [log a, log b] with q the density of log λ, 1/(log b − log a)."""
  lo, hi = math.log(a), math.log(b)
  q = 1.0 / (hi - lo)
  return integrate.quad(lambda _: -q * math.log(q), lo, hi, epsabs=0, epsrel=1e-12)[0]


def test_log_entropy_matches_numerical_integration_and_has_no_location_pull():
  a, b = np.array(BOUNDS[:5]).T
  params = _params(np.log(a), np.log(b))
  want = np.array([_quad_log_entropy(lo, hi) for lo, hi in BOUNDS[:5]])
  np.testing.assert_allclose(log_uniform.log_entropy(params), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(log_uniform.mean_entropy(params, 'log_lambda'), want.mean(), rtol=1e-5)
  # Gradients: the entropy of λ pulls both bounds up by ½ on top of the width term; the entropy
  # of log λ only rewards width (its gradients on log a and log b are opposite).
  g_lambda = jax.grad(lambda p: log_uniform.mean_entropy(p, 'lambda'))(params)
  g_log = jax.grad(lambda p: log_uniform.mean_entropy(p, 'log_lambda'))(params)
  np.testing.assert_allclose(g_log.log_a + g_log.log_b, 0.0, atol=1e-7)
  np.testing.assert_allclose(g_lambda.log_a + g_lambda.log_b, 1.0 / a.size, rtol=1e-5)


def test_mean_entropy_unknown_kind_lists_the_choices():
  params = _params(np.zeros((1, 1)), np.ones((1, 1)))
  with pytest.raises(ValueError, match=r"'nats'.*lambda, log_lambda"):
    log_uniform.mean_entropy(params, 'nats')
