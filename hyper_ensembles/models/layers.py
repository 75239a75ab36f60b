"""Dense, convolution and dropout layers in plain and batch-ensemble form.

Every layer is called as `layer(x, cond)`; `cond` carries hyperparameters as arrays
(see conditioning.py). Each layer also contributes its own L2 penalty to the `penalties`
collection, scaled by the hyperparameter the architecture named for it (`kernel_l2`, `bias_l2`).
That makes the mapping from parameters to regularisation groups explicit code: nothing ever picks
parameters by matching substrings of their names.

Batch-ensemble layers (Wen et al. 2020) keep an explicit leading member axis: input `[M, B, ...]`,
shared kernel W, per-member fast weights r (input side) and s (output side) and per-member bias:
y_k = ((x ∘ r_k) W) ∘ s_k + b_k, which equals x W_k + b_k with W_k = W ∘ r_k s_kᵀ.
Convolutions (every form) are convolution.py's: row-chunked on CPU, and for batch ensembles
conv(x_k, W ∘ r_k) per member, which equals conv(x_k ∘ r_k, W).
Fast weights are boxed as `FastWeight` at init so the optimiser can give them their own learning
rate by parameter-tree label.

The penalty convention (docs/design.md §4, official code): loss += Σ_layers ν·‖θ‖² / N_train;
`N_train`
is applied by the method, the layers sow ν·‖θ‖² averaged over members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.linen import meta
from jax.custom_derivatives import SymbolicZero

from hyper_ensembles.models.conditioning import Conditioning, expand_rows, member_mean
from hyper_ensembles.models.convolution import conv2d, member_conv2d

KERNEL_INIT = nn.initializers.he_normal()
PENALTY_COLLECTION = 'penalties'


class FastWeight(flax.struct.PyTreeNode, meta.AxisMetadata):
  """Marks a batch-ensemble fast weight (r, s, u, v) in the init output.

  Only used to derive the optimiser's parameter labels; Flax unboxes it on `self.param`.
  """

  value: Any

  def unbox(self):
    return self.value

  def replace_boxed(self, val):
    return self.replace(value=val)

  def add_axis(self, index, params):
    return self

  def remove_axis(self, index, params):
    return self


def fast_weight_init(kind: str, std: float) -> Callable[..., FastWeight]:
  """Initialiser for fast weights: N(1, std) ('normal') or random ±1 signs ('random_sign')."""
  if kind == 'normal':
    base = lambda key, shape, dtype=jnp.float32: 1.0 + std * jax.random.normal(key, shape, dtype)
  elif kind == 'random_sign':
    base = lambda key, shape, dtype=jnp.float32: (
        2.0 * jax.random.bernoulli(key, 0.5, shape).astype(dtype) - 1.0)
  else:
    raise ValueError(f"Unknown fast-weight init {kind!r}; choose one of: normal, random_sign")
  return lambda key, shape, dtype=jnp.float32: FastWeight(base(key, shape, dtype))


def parameter_labels(boxed_params) -> Any:
  """'fast' for every FastWeight leaf of an init output, 'slow' for every other parameter."""
  return jax.tree.map(
      lambda leaf: 'fast' if isinstance(leaf, FastWeight) else 'slow', boxed_params,
      is_leaf=lambda leaf: isinstance(leaf, FastWeight))


def sow_l2(module: nn.Module, cond: Conditioning, hparam: str | None, sq_norm: jax.Array,
           per_member: bool) -> None:
  """Adds ν·‖θ‖² to the penalty collection (a no-op unless `penalties` is mutable).

  `sq_norm` is a scalar for shared parameters, `[M]` for per-member ones; either way the result is
  the member mean of ν_k·‖θ_k‖² with ν_k the member's (example-averaged) coefficient.
  """
  if hparam is None or hparam in cond.zero:
    return
  coef = member_mean(cond.get(hparam))
  if per_member:
    value = jnp.mean(coef * sq_norm)
  else:
    value = jnp.mean(coef) * sq_norm
  module.sow(PENALTY_COLLECTION, 'l2', value, reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0)


def per_member(v: jax.Array, ndim: int) -> jax.Array:
  """Reshapes a per-member vector `[M, d]` to broadcast against `[M, B, ..., d]` of rank ndim."""
  return v.reshape((v.shape[0],) + (1,) * (ndim - 2) + (v.shape[-1],))


@jax.custom_vjp
def scaled_matmul(x: jax.Array, kernel: jax.Array, r: jax.Array) -> jax.Array:
  """(x ∘ r_k) W, the slow path of a batch-ensemble dense layer: x `[M, ..., d_in]`, r `[M, d_in]`.

  The value is the plain expression; only the gradient is hand-written. Autodiff of the plain
  expression gets ∂r from the input gradient ∂z Wᵀ, a matmul as large as the forward one, which a
  first layer (whose input needs no gradient) would otherwise skip. When x needs no gradient, the
  per-member kernel gradients P_k = x_kᵀ ∂z_k give both ∂W = Σ_k r_k ∘ P_k and ∂r_k = Σ_o W ∘ P_k,
  so the layer costs the matmul FLOPs of a plain one on M·B rows. Otherwise the gradients are those
  of autodiff of the plain expression.
  """
  return (x * per_member(r, x.ndim)) @ kernel


def _scaled_matmul_fwd(x, kernel, r):
  x_needs_grad = x.perturbed  # a Python bool (symbolic_zeros=True below)
  x, kernel, r = x.value, kernel.value, r.value
  return (x * per_member(r, x.ndim)) @ kernel, (x, kernel, r, x_needs_grad)


def _scaled_matmul_bwd(res, dz):
  x, kernel, r, x_needs_grad = res
  if isinstance(dz, SymbolicZero):
    return None, None, None
  m = x.shape[0]
  rows = lambda a: a.reshape(m, -1, a.shape[-1])
  if x_needs_grad:
    dh = dz @ kernel.T
    dkernel = jnp.einsum('mni,mno->io', rows(x * per_member(r, x.ndim)), rows(dz))
    dr = jnp.einsum('mni,mni->mi', rows(x), rows(dh))
    return dh * per_member(r, dh.ndim), dkernel, dr
  p = jnp.einsum('mni,mno->mio', rows(x), rows(dz))
  return None, jnp.einsum('mi,mio->io', r, p), jnp.einsum('io,mio->mi', kernel, p)


scaled_matmul.defvjp(_scaled_matmul_fwd, _scaled_matmul_bwd, symbolic_zeros=True)


class _PlainBase(nn.Module):
  """Shared kernel / bias / L2 logic of the plain dense and conv layers."""

  features: int
  kernel_l2: str | None = None
  bias_l2: str | None = None
  use_bias: bool = True

  def _forward(self, x: jax.Array, cond: Conditioning, kernel_shape, op) -> jax.Array:
    """`op(x, kernel)` is the linear map (matmul, conv)."""
    kernel = self.param('kernel', KERNEL_INIT, kernel_shape)
    y = op(x, kernel)
    sow_l2(self, cond, self.kernel_l2, jnp.sum(kernel**2), per_member=False)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,))
      y = y + bias
      sow_l2(self, cond, self.bias_l2, jnp.sum(bias**2), per_member=False)
    return y


class Dense(_PlainBase):
  """Plain dense layer with explicit L2 groups."""

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning) -> jax.Array:
    return self._forward(x, cond, (x.shape[-1], self.features), jnp.matmul)


class Conv(_PlainBase):
  """Plain 2-D convolution (NHWC, any leading row axes) with explicit L2 groups."""

  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning) -> jax.Array:
    return self._forward(
        x, cond, (*self.kernel_size, x.shape[-1], self.features),
        lambda h, k: conv2d(h, k, self.strides, self.padding))


class _BatchEnsembleBase(nn.Module):
  """Shared fast-weight / bias logic of the batch-ensemble dense and conv layers."""

  features: int
  num_members: int
  kernel_l2: str | None = None
  bias_l2: str | None = None
  use_bias: bool = True
  fast_init: str = 'normal'
  fast_std: float = 0.5

  def _forward(self, x: jax.Array, cond: Conditioning, kernel_shape, scaled_op) -> jax.Array:
    """`scaled_op(x, kernel, r)` is the slow op (matmul, conv) applied to x ∘ r_k."""
    m = self.num_members
    if x.shape[0] != m:
      raise ValueError(f'{self.name}: expected a leading member axis of {m}, got {x.shape}')
    kernel = self.param('kernel', KERNEL_INIT, kernel_shape)
    init = fast_weight_init(self.fast_init, self.fast_std)
    r = self.param('fast_in', init, (m, x.shape[-1]))
    s = self.param('fast_out', init, (m, self.features))
    y = scaled_op(x, kernel, r) * per_member(s, x.ndim)
    sow_l2(self, cond, self.kernel_l2, jnp.sum(kernel**2), per_member=False)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (m, self.features))
      y = y + per_member(bias, y.ndim)
      sow_l2(self, cond, self.bias_l2, jnp.sum(bias**2, axis=1), per_member=True)
    return y


class BatchEnsembleDense(_BatchEnsembleBase):
  """Batch-ensemble dense layer: `[M, B, d_in]` → `[M, B, features]`."""

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning) -> jax.Array:
    return self._forward(x, cond, (x.shape[-1], self.features), scaled_matmul)


class BatchEnsembleConv(_BatchEnsembleBase):
  """Batch-ensemble conv: `[M, B, H, W, C]`; r scales input channels, s output channels."""

  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning) -> jax.Array:
    return self._forward(
        x, cond, (*self.kernel_size, x.shape[-1], self.features),
        lambda h, k, r: member_conv2d(h, k, r, self.strides, self.padding))


def dropout(rng: jax.Array, x: jax.Array, rate: jax.Array) -> jax.Array:
  """Inverted dropout whose rate is an array broadcastable over x's leading (row) axes."""
  keep = 1.0 - expand_rows(rate, x.ndim)
  mask = jax.random.bernoulli(rng, jnp.broadcast_to(keep, x.shape))
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


class Dropout(nn.Module):
  """Dropout with the rate read from `cond` (per member or per example); off at evaluation.

  Linen's nn.Dropout branches on a Python float rate; ours takes an array so the rate can be a
  per-row hyperparameter inside one compiled program.
  """

  hparam: str | None

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning, deterministic: bool) -> jax.Array:
    if deterministic or self.hparam is None or self.hparam in cond.zero:
      return x
    return dropout(self.make_rng('dropout'), x, cond.get(self.hparam))
