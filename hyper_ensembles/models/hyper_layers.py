"""Hyper-batch-ensemble dense and conv layers, and their λ-dependent L2 penalty (docs/design.md §4).

A hyper-batch-ensemble layer is a batch-ensemble layer whose weights also depend on the
hyperparameters λ of the row it processes. Input `[M, B, ...]` (an explicit member axis, rows of
member k in `x[k]`) plus λ̃ `[M, B, D]` (λ normalised to [0, 1] in log space, `cond.lam_tilde`):

  y = ((x∘r_k) W)∘s_k + e₁(λ̃) ∘ ((x∘u_k) Δ)∘v_k + b_k + e₂(λ̃) ∘ δ_k

with shared kernels W and Δ, member fast weights r_k, s_k (and u_k, v_k, tied to r_k, s_k by
default as in the official ResNet runs), member biases b_k, δ_k and a per-layer linear embedding
e(λ̃) = λ̃·E (no bias, init N(0, 1e-4²)) of size 2·d_out, split into e₁ (kernel part) and e₂ (bias
part). Every layer's embedding sees the whole λ̃. Equivalently, row (k, i) uses the kernel
W_k(λ) = W∘r_k s_kᵀ + (Δ∘u_k v_kᵀ)·diag(e₁(λ̃_{k,i})) and the bias b_k + e₂(λ̃_{k,i})∘δ_k; the
tests check exactly that expansion. For a convolution, r/u scale input channels, s/v/e output
channels, and "columns" below are output channels.

**L2.** For a kernel with coefficient ν (per row, `[M, B]`, e.g. a sampled λ component) the penalty
is the member mean of the batch mean of ν_{k,i}·‖W_k + Δ_k·diag(e₁(λ_{k,i}))‖². Expanding the
square per output column c gives, with per-member batch means m0 = mean_i ν, m1 = mean_i ν·e₁ and
m2 = mean_i ν·e₁²,

  m0·Σ_c ‖W_k[:, c]‖² + 2·Σ_c m1[c]·⟨W_k[:, c], Δ_k[:, c]⟩ + Σ_c m2[c]·‖Δ_k[:, c]‖²,

so no per-example (and no per-member) kernel is ever materialised. With
`l2_with_fast_weights=True` W_k = W∘r_k s_kᵀ and Δ_k = Δ∘u_k v_kᵀ (the column sums then factor as
s_k[c]²·Σ_a r_k[a]² W[a, c]², etc.); with False (official ResNet code, our default) W_k = W and
Δ_k = Δ. The bias term is the same expansion with b_k, δ_k and e₂ (fast weights never touch biases).
The value is sown into the `penalties` collection like `layers.sow_l2`; the method divides by N.

models/kit.py builds these layers for the 'hyper_batch' form.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.convolution import member_conv2d
from hyper_ensembles.models.layers import (
  KERNEL_INIT,
  PENALTY_COLLECTION,
  fast_weight_init,
  per_member,
  scaled_matmul,
)


def per_example(v: jax.Array, ndim: int) -> jax.Array:
  """Reshapes a per-row vector `[M, B, d]` to broadcast against `[M, B, ..., d]` of rank ndim."""
  return v.reshape(v.shape[:2] + (1,) * (ndim - 3) + (v.shape[-1],))


def row_coefficient(cond: Conditioning, hparam: str, rows: tuple[int, int]) -> jax.Array:
  """The coefficient ν of `hparam` for every row, `[M, B]` (fixed values are broadcast)."""
  value = jnp.asarray(cond.get(hparam))
  if value.ndim == 0:
    value = value[None, None]
  elif value.ndim == 1:
    value = value[:, None]
  return jnp.broadcast_to(value, rows)


def batch_moments(nu: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-member batch means m0 = E[ν] `[M]`, m1 = E[ν·e] `[M, d]` and m2 = E[ν·e²] `[M, d]`.

  Args:
    nu: coefficients `[M, B]`.
    e: embedding part `[M, B, d]`.
  """
  m0 = jnp.mean(nu, axis=1)
  m1 = jnp.mean(nu[..., None] * e, axis=1)
  m2 = jnp.mean(nu[..., None] * e**2, axis=1)
  return m0, m1, m2


def kernel_column_terms(kernel: jax.Array, delta: jax.Array, fast: tuple | None
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-member column sums ‖W_k[:, c]‖², ⟨W_k[:, c], Δ_k[:, c]⟩, ‖Δ_k[:, c]‖², each `[M or 1, d]`.

  Args:
    kernel: W, `[..., d_in, d_out]` (spatial axes first for a convolution).
    delta: Δ, same shape.
    fast: None (norm without fast weights; the terms are shared, shape `[1, d_out]`), or the
      fast weights (r, s, u, v) with shapes `[M, d_in]`, `[M, d_out]`, `[M, d_in]`, `[M, d_out]`.
  """
  d_in, d_out = kernel.shape[-2:]
  w = kernel.reshape(-1, d_in, d_out)
  dw = delta.reshape(-1, d_in, d_out)
  # Summing over spatial positions first leaves [d_in, d_out] matrices; a column of the
  # per-member kernel scaled by r (rows) and s (columns) then has squared norm s²·(r² @ W²).
  w_sq = jnp.sum(w**2, axis=0)
  w_dw = jnp.sum(w * dw, axis=0)
  dw_sq = jnp.sum(dw**2, axis=0)
  if fast is None:
    return w_sq.sum(0)[None], w_dw.sum(0)[None], dw_sq.sum(0)[None]
  r, s, u, v = fast
  return ((r**2) @ w_sq * s**2, (r * u) @ w_dw * (s * v), (u**2) @ dw_sq * v**2)


def closed_form_l2(m0: jax.Array, m1: jax.Array, m2: jax.Array, sq: jax.Array, cross: jax.Array,
                   delta_sq: jax.Array) -> jax.Array:
  """Member mean of m0·Σ sq + 2·Σ m1·cross + Σ m2·delta_sq (the expanded batch-mean L2)."""
  per_member_value = (m0 * jnp.sum(sq, axis=-1) + 2.0 * jnp.sum(m1 * cross, axis=-1)
                      + jnp.sum(m2 * delta_sq, axis=-1))
  return jnp.mean(per_member_value)


def _sow(module: nn.Module, value: jax.Array) -> None:
  # Same collection, name and reduction as layers.sow_l2, so losses.total_penalty sums both kinds.
  module.sow(PENALTY_COLLECTION, 'l2', value, reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0)


class _HyperBatchEnsembleBase(nn.Module):
  """Shared parameters, forward pass and L2 of the hyper-batch-ensemble dense and conv layers."""

  features: int
  num_members: int
  kernel_l2: str | None = None
  bias_l2: str | None = None
  use_bias: bool = True
  fast_init: str = 'normal'
  fast_std: float = 0.5
  tie_uv: bool = True
  embedding_std: float = 1e-4
  embedding_hidden: int = 0
  l2_with_fast_weights: bool = False

  def _embed(self, lam_tilde: jax.Array, width: int) -> jax.Array:
    """e(λ̃) `[M, B, width]`: linear (official default), or with `embedding_hidden` > 0 the
    official factory's non-linear option: one tanh layer with bias, then the linear head."""
    h = lam_tilde
    if self.embedding_hidden:
      hidden = self.param('embedding_hidden_kernel', nn.initializers.glorot_uniform(),
                          (h.shape[-1], self.embedding_hidden))
      hidden_bias = self.param('embedding_hidden_bias', nn.initializers.zeros,
                               (self.embedding_hidden,))
      h = jnp.tanh(h.astype(hidden.dtype) @ hidden + hidden_bias)
    embedding = self.param('embedding', nn.initializers.normal(self.embedding_std),
                           (h.shape[-1], width))
    return h.astype(embedding.dtype) @ embedding

  def _forward(self, x: jax.Array, cond: Conditioning, kernel_shape: tuple[int, ...],
               scaled_op: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]) -> jax.Array:
    """`scaled_op(x, kernel, r)` is the slow op (matmul, conv) applied to x ∘ r_k."""
    m = self.num_members
    if x.shape[0] != m:
      raise ValueError(f'{self.name}: expected a leading member axis of {m}, got {x.shape}')
    lam_tilde = cond.lam_tilde
    if lam_tilde is None or lam_tilde.shape[:2] != x.shape[:2]:
      raise ValueError(
          f'{self.name}: a hyper-batch layer needs cond.lam_tilde of shape [M, B, D] matching '
          f'its input rows {x.shape[:2]}, got '
          f'{None if lam_tilde is None else lam_tilde.shape}')
    d_in = x.shape[-1]
    kernel = self.param('kernel', KERNEL_INIT, kernel_shape)
    # Δ has the kernel's shape and initialiser, as in the official layers.
    delta = self.param('delta_kernel', KERNEL_INIT, kernel_shape)
    init = fast_weight_init(self.fast_init, self.fast_std)
    r = self.param('fast_in', init, (m, d_in))
    s = self.param('fast_out', init, (m, self.features))
    if self.tie_uv:
      u, v = r, s
    else:
      u = self.param('delta_fast_in', init, (m, d_in))
      v = self.param('delta_fast_out', init, (m, self.features))
    # e = [e₁, e₂]: weights part and bias part; a layer without bias needs (and, as in the
    # official layers, has) only e₁.
    width = 2 * self.features if self.use_bias else self.features
    e = self._embed(lam_tilde, width)  # [M, B, width]
    e1, e2 = e[..., :self.features], e[..., self.features:]

    if self.tie_uv:
      # u = r: one matmul / conv with [W, Δ] stacked along the outputs computes both paths, which
      # halves the number of convolutions to compile and run (for a conv: one per member, with
      # the member's kernel [W, Δ] ∘ r_k; convolution.member_conv2d).
      both = scaled_op(x, jnp.concatenate([kernel, delta], axis=-1), r)
      y, y_delta = both[..., :self.features], both[..., self.features:]
    else:
      y = scaled_op(x, kernel, r)
      y_delta = scaled_op(x, delta, u)
    y = y * per_member(s, x.ndim) + per_example(e1, y.ndim) * y_delta * per_member(v, x.ndim)
    rows = x.shape[:2]
    if self.kernel_l2 is not None:
      nu = row_coefficient(cond, self.kernel_l2, rows)
      fast = (r, s, u, v) if self.l2_with_fast_weights else None
      _sow(self, closed_form_l2(*batch_moments(nu, e1),
                                *kernel_column_terms(kernel, delta, fast)))
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (m, self.features))
      # δ starts at zero like the bias (official bias initialiser for both).
      delta_bias = self.param('delta_bias', nn.initializers.zeros, (m, self.features))
      y = y + per_member(bias, y.ndim) + per_example(e2 * delta_bias[:, None, :], y.ndim)
      if self.bias_l2 is not None:
        nu = row_coefficient(cond, self.bias_l2, rows)
        _sow(self, closed_form_l2(*batch_moments(nu, e2), bias**2, bias * delta_bias,
                                  delta_bias**2))
    return y


class HyperBatchEnsembleDense(_HyperBatchEnsembleBase):
  """Hyper-batch-ensemble dense layer: `[M, B, d_in]` and λ̃ `[M, B, D]` → `[M, B, features]`."""

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning) -> jax.Array:
    # scaled_matmul: the first layer's gradient skips the input-gradient matmuls (layers.py).
    return self._forward(x, cond, (x.shape[-1], self.features), scaled_matmul)


class HyperBatchEnsembleConv(_HyperBatchEnsembleBase):
  """Hyper-batch-ensemble 2-D convolution: `[M, B, H, W, C]` and λ̃ `[M, B, D]`."""

  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'

  @nn.compact
  def __call__(self, x: jax.Array, cond: Conditioning) -> jax.Array:
    return self._forward(
        x, cond, (*self.kernel_size, x.shape[-1], self.features),
        lambda h, k, r: member_conv2d(h, k, r, self.strides, self.padding))
