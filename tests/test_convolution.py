"""models/convolution.py and methods/member_map.py against independent references.

Oracles: one `lax.conv_general_dilated` over all rows (values and input / kernel gradients), the
old batch-ensemble formula conv(x ∘ r_k, W) on the folded rows, `flax.linen.max_pool`, `jax.vmap`,
and the jaxpr of the deep-ensemble LeNet step (no grouped convolution: members are not vmapped).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.methods.member_map import member_map
from hyper_ensembles.methods.registry import create_method
from hyper_ensembles.models import convolution
from hyper_ensembles.models.registry import ARCHITECTURES
from hyper_ensembles.training.state import create_train_state
from hyper_ensembles.training.steps import make_train_step
from tests.conftest import smoke_config

DIGITS = DatasetInfo('digits', 10, (8, 8, 1), (0.5,), (0.25,))


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _assert_grads_close(got, want):
  for a, b in zip(got, want, strict=True):
    # Gradients sum many products: compare relative to their scale.
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


CASES = [  # rows, size, c_in, c_out, kernel, strides, padding, row_chunk
    (128, 28, 1, 6, 5, (1, 1), 'SAME', 128),
    (300, 14, 6, 16, 5, (1, 1), 'SAME', 128),  # ragged last chunk
    (70, 8, 1, 6, 5, (1, 1), 'VALID', 32),
    (90, 15, 3, 8, 3, (2, 2), 'SAME', 32),
    (40, 12, 4, 5, 3, (1, 1), ((1, 2), (0, 1)), 16),
    (64, 9, 6, 16, 3, (1, 1), 'SAME', None),
    (50, 9, 2, 3, 3, (1, 1), 'SAME', -1),  # the backend's default
]


@pytest.mark.parametrize('rows,size,c_in,c_out,ks,strides,padding,chunk', CASES)
def test_conv2d_equals_one_lax_convolution_in_value_and_gradients(
    rows, size, c_in, c_out, ks, strides, padding, chunk):
  kx, kk, kg = jax.random.split(jax.random.PRNGKey(rows), 3)
  x = jax.random.normal(kx, (rows, size, size, c_in))
  kernel = jax.random.normal(kk, (ks, ks, c_in, c_out)) / np.sqrt(ks * ks * c_in)
  ours = lambda x, k: convolution.conv2d(x, k, strides, padding, row_chunk=chunk)
  ref = lambda x, k: _lax_conv(x, k, strides, padding)
  y, y_ref = jax.jit(ours)(x, kernel), ref(x, kernel)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  g = jax.random.normal(kg, y.shape)
  grads = lambda f: jax.jit(jax.grad(lambda x, k: jnp.vdot(f(x, k), g), argnums=(0, 1)))(x, kernel)
  _assert_grads_close(grads(ours), grads(ref))


def test_conv2d_keeps_leading_row_axes():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 8, 8, 2))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4))
  y = convolution.conv2d(x, kernel, row_chunk=4)
  want = _lax_conv(x.reshape(15, 8, 8, 2), kernel, (1, 1), 'SAME').reshape(3, 5, 8, 8, 4)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('chunk', [None, 64])
@pytest.mark.parametrize('x_needs_grad', [True, False])
def test_member_conv2d_equals_the_folded_scaled_input_formula(chunk, x_needs_grad):
  """conv(x_k, W ∘ r_k) per member vs conv(x ∘ r, W) on all M·B rows at once, with gradients for
  W and r, and for x unless it is a first layer's input."""
  m, b = 3, 70
  kx, kk, kr, kg = jax.random.split(jax.random.PRNGKey(7), 4)
  x = jax.random.normal(kx, (m, b, 10, 10, 4))
  kernel = jax.random.normal(kk, (3, 3, 4, 12)) * 0.2
  r = jax.random.normal(kr, (m, 4))
  g = jax.random.normal(kg, (m, b, 5, 5, 12))
  ours = lambda x, k, r: convolution.member_conv2d(x, k, r, (2, 2), 'SAME', row_chunk=chunk)

  def folded(x, k, r):
    rows = (x * r[:, None, None, None, :]).reshape(m * b, 10, 10, 4)
    return _lax_conv(rows, k, (2, 2), 'SAME').reshape(g.shape)

  np.testing.assert_allclose(jax.jit(ours)(x, kernel, r), folded(x, kernel, r), rtol=1e-5,
                             atol=1e-5)
  argnums = (0, 1, 2) if x_needs_grad else (1, 2)
  grads = lambda f: jax.jit(jax.grad(lambda *a: jnp.vdot(f(*a), g), argnums))(x, kernel, r)
  _assert_grads_close(grads(ours), grads(folded))


def test_member_conv2d_rejects_mismatched_members():
  with pytest.raises(ValueError, match='3 members, r has 2'):
    convolution.member_conv2d(jnp.zeros((3, 1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)),
                              jnp.ones((2, 2)))


@pytest.mark.parametrize('shape', [(32, 28, 28, 6), (4, 8, 14, 14, 16), (6, 7, 7, 3),
                                   (2, 6, 5, 2)])
def test_max_pool_2x2_equals_flax_max_pool(shape):
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
  x = jax.random.normal(jax.random.PRNGKey(2), shape)  # continuous: no ties inside a window
  np.testing.assert_array_equal(convolution.max_pool_2x2(x), ref(x))
  g = jax.random.normal(jax.random.PRNGKey(1), ref(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.vdot(f(x), g))(x)
  np.testing.assert_allclose(grad(convolution.max_pool_2x2), grad(ref), rtol=1e-6, atol=1e-6)


def test_max_pool_2x2_shares_the_gradient_of_a_tie():
  """A tie is one valid gradient of the max: the window's gradient is conserved and split."""
  x = jnp.array([[3.0, 3.0], [1.0, 2.0]])[None, :, :, None]
  grad = jax.grad(lambda x: convolution.max_pool_2x2(x).sum())(x)
  np.testing.assert_allclose(grad[0, :, :, 0], [[0.5, 0.5], [0.0, 0.0]])


@pytest.mark.parametrize('unroll', [False, True])
def test_member_map_equals_vmap(unroll):
  def f(params, x, shared):
    return {'y': convolution.conv2d(x, params['k'], row_chunk=None) * shared, 'n': params['n']}

  m = 3
  params = {'k': jax.random.normal(jax.random.PRNGKey(0), (m, 3, 3, 2, 4)),
            'n': jnp.arange(m, dtype=jnp.float32)}
  x = jax.random.normal(jax.random.PRNGKey(1), (m, 5, 6, 6, 2))
  shared = jnp.float32(1.5)
  got = member_map(f, (0, 0, None), unroll)(params, x, shared)
  for k in range(m):  # the oracle: each member alone
    one = f({'k': params['k'][k], 'n': params['n'][k]}, x[k], shared)
    np.testing.assert_allclose(got['y'][k], one['y'], rtol=1e-5, atol=1e-5)
    assert got['n'][k] == one['n']


def test_member_map_rejects_other_axes():
  with pytest.raises(ValueError, match='axis 0 or nothing'):
    member_map(lambda a: a, (1,), unroll=True)


def _conv_group_counts(jaxpr) -> list[int]:
  """feature_group_count × batch_group_count of every convolution in a jaxpr, nested ones too."""
  out = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      out.append(eqn.params['feature_group_count'] * eqn.params['batch_group_count'])
    for value in eqn.params.values():
      for inner in value if isinstance(value, tuple | list) else (value,):
        inner = getattr(inner, 'jaxpr', inner)  # ClosedJaxpr → Jaxpr
        if hasattr(inner, 'eqns'):
          out.extend(_conv_group_counts(inner))
  return out


def test_vmapped_convolutions_are_grouped_ones():
  """What the next test looks for: vmap over members' kernels makes a grouped convolution."""
  step = jax.vmap(lambda k, x: convolution.conv2d(x, k, row_chunk=None))
  jaxpr = jax.make_jaxpr(step)(jnp.zeros((3, 3, 3, 2, 4)), jnp.zeros((3, 5, 6, 6, 2))).jaxpr
  assert max(_conv_group_counts(jaxpr)) > 1


def test_architectures_declare_convolutions():
  assert {n for n, a in ARCHITECTURES.items() if a.convolutional} == {'lenet', 'resnet20',
                                                                        'wrn28_10'}


def test_deep_ensemble_of_convnets_is_not_vmapped_in_training_or_prediction():
  config = smoke_config('deep', 'lenet')
  config.num_members = 3
  method = create_method(config, DIGITS, 100)
  assert method.unroll_members
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  state, tx, _ = create_train_state(method, config, 10, mesh)
  batch = {'images': jnp.zeros((3, config.batch_size, 8, 8, 1), jnp.uint8),
           'labels': jnp.zeros((3, config.batch_size), jnp.int32)}
  for jaxpr in (jax.make_jaxpr(make_train_step(method, tx))(state, batch).jaxpr,
                jax.make_jaxpr(method.predict)(state, batch['images'][0]).jaxpr):
    counts = _conv_group_counts(jaxpr)
    assert counts and set(counts) == {1}, counts
