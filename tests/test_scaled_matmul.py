"""The batch-ensemble matmul's hand-written gradient equals autodiff of its plain expression.

`_rank1` computes ((x ∘ r_k) W) ∘ s_k and takes a cheaper gradient path when x needs
no gradient (a first layer); both paths, under jit and vmap, must agree with autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyper_ensembles.models import layers


def _plain(x, kernel, r, s):
  return ((x * layers.per_member(r, x.ndim)) @ kernel) * layers.per_member(s, x.ndim)


def _rank1(x, kernel, r, s):
  return layers.scaled_matmul(x, kernel, r) * layers.per_member(s, x.ndim)


def _inputs(shape=(3, 5, 2, 7), d_out=4):
  m, d_in = shape[0], shape[-1]
  ks = jax.random.split(jax.random.PRNGKey(0), 5)
  return (jax.random.normal(ks[0], shape), jax.random.normal(ks[1], (d_in, d_out)),
          jax.random.normal(ks[2], (m, d_in)), jax.random.normal(ks[3], (m, d_out)),
          jax.random.normal(ks[4], (*shape[:-1], d_out)))


def _loss(f, g):
  return lambda x, kernel, r, s: jnp.sum(jnp.sin(f(x, kernel, r, s)) * g)


@pytest.mark.parametrize('shape', [(3, 5, 7), (3, 5, 2, 7)])
@pytest.mark.parametrize('argnums', [(1, 2, 3), (0, 1, 2, 3)])
def test_gradients_match_autodiff(shape, argnums):
  x, kernel, r, s, g = _inputs(shape)
  np.testing.assert_array_equal(_rank1(x, kernel, r, s), _plain(x, kernel, r, s))
  want = jax.grad(_loss(_plain, g), argnums)(x, kernel, r, s)
  got = jax.jit(jax.grad(_loss(_rank1, g), argnums))(x, kernel, r, s)
  for a, b in zip(got, want, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gradient_through_a_computed_input_and_under_vmap():
  x, kernel, r, s, g = _inputs()

  def loss(f):
    return lambda kernel, r, s: jnp.sum(f(jnp.tanh(x * kernel[0, 0]), kernel, r, s) * g)

  for a, b in zip(jax.grad(loss(_rank1), (0, 1, 2))(kernel, r, s),
                  jax.grad(loss(_plain), (0, 1, 2))(kernel, r, s), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  kernels = jnp.stack([kernel, 2.0 * kernel])
  per_kernel = lambda f: jax.vmap(jax.grad(_loss(f, g), (1, 2)), in_axes=(None, 0, None, None))
  for a, b in zip(per_kernel(_rank1)(x, kernels, r, s),
                  per_kernel(_plain)(x, kernels, r, s), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
