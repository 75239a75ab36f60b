"""Averaging member predictions into an ensemble predictive, in JAX (docs/design.md §2).

This module owns the one place where member logits `[M, N, C]` become the ensemble's
log-predictive log p̄ `[N, C]`, with p̄ = Σ_k w_k softmax(z_k) and w uniform (1/M) by default. It is
used both by evaluation and, inside jit and under grad, by the hyper-batch tune loss, so everything
here is pure `jax.numpy`, shape-polymorphic over the member count and safe to differentiate.

We average *probabilities*, never logits: log p̄ = logsumexp_k(log_softmax(z_k) + log w_k). Weights
exist because greedy selection with replacement (hyper-deep ensembles) produces duplicates, which
act as integer weights; a zero weight must behave exactly like dropping that member.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def member_log_probs(logits: jax.Array) -> jax.Array:
  """Per-member log-probabilities: log_softmax over the last (class) axis.

  Args:
    logits: member logits `[M, N, C]` (any leading shape works).

  Returns:
    Log-probabilities with the same shape and dtype as `logits`.
  """
  return jax.nn.log_softmax(logits, axis=-1)


def _log_weights(weights: jax.Array | None, num_members: int, dtype) -> jax.Array:
  """Normalised log member weights `[M]`; -inf (not NaN) where a weight is zero."""
  if weights is None:
    return jnp.full((num_members,), -jnp.log(num_members), dtype=dtype)
  weights = jnp.asarray(weights, dtype=dtype)
  if weights.shape != (num_members,):
    raise ValueError(f'weights must have shape [M={num_members}], got {weights.shape}')
  weights = weights / jnp.sum(weights)
  positive = weights > 0
  # The inner where keeps log's argument positive so that the gradient w.r.t. a zero weight is 0
  # rather than 0 * inf = NaN; the outer where then sets the value to log 0 = -inf, which
  # logsumexp turns into a zero contribution.
  safe = jnp.where(positive, weights, 1.0)
  return jnp.where(positive, jnp.log(safe), -jnp.inf)


def ensemble_log_probs(logits: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Log of the (weighted) mean of member softmax probabilities.

  log p̄ = logsumexp_k(log_softmax(z_k) + log w_k), with w = weights / Σ weights.

  Args:
    logits: member logits `[M, N, C]` (any shape `[M, ..., C]` works).
    weights: optional non-negative member weights `[M]`, normalised here so they need not sum to
      one (integer duplicate counts from greedy selection are fine). Zero weights are allowed and
      are equivalent to dropping the member; at least one weight must be positive (this is not
      checked, so that the function stays traceable). Default: uniform 1/M.

  Returns:
    log p̄ with shape `logits.shape[1:]`, e.g. `[N, C]`, in float32 or wider.
  """
  logits = jnp.asarray(logits)
  if logits.ndim < 2:
    raise ValueError(f'logits must be [M, ..., C], got shape {logits.shape}')
  # Low-precision (bf16/fp16) logits are upcast: log_softmax and logsumexp lose too much in 8
  # mantissa bits for an NLL that the tune step differentiates.
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  num_members = logits.shape[0]
  log_w = _log_weights(weights, num_members, logits.dtype)
  log_w = log_w.reshape((num_members,) + (1,) * (logits.ndim - 1))
  return jax.nn.logsumexp(member_log_probs(logits) + log_w, axis=0)


def ensemble_nll(
    logits: jax.Array,
    labels: jax.Array,
    weights: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Ensemble negative log-likelihood −mean_n log p̄(y_n | x_n), a scalar.

  Args:
    logits: member logits `[M, N, C]`.
    labels: integer labels `[N]` in [0, C).
    weights: optional member weights `[M]`, as in `ensemble_log_probs`.
    mask: optional `[N]` bool or 0/1 array; the mean is taken over rows where it is set (e.g. to
      ignore padding of a final partial batch); non-binary values act as row weights. Masked-out
      rows may carry any label, including out-of-range padding values such as -1. If no row is
      set the result is 0, not NaN.

  Returns:
    Scalar NLL in the dtype of the log-probabilities.
  """
  log_probs = ensemble_log_probs(logits, weights)
  labels = jnp.asarray(labels)
  if labels.shape != log_probs.shape[:-1]:
    raise ValueError(f'labels must have shape {log_probs.shape[:-1]}, got {labels.shape}')
  if mask is None:
    picked = jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked[..., 0])
  mask = jnp.asarray(mask)
  if mask.shape != labels.shape:
    raise ValueError(f'mask must have shape {labels.shape}, got {mask.shape}')
  keep = mask.astype(bool)
  # Padding rows may hold invalid labels: replace them before indexing so nothing out of range is
  # ever gathered, then exclude them from the sum.
  safe_labels = jnp.where(keep, labels, 0).astype(jnp.int32)
  picked = jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
  weight = mask.astype(log_probs.dtype)
  total = jnp.sum(jnp.where(keep, picked, 0.0) * weight)
  count = jnp.sum(weight)
  return -total / jnp.maximum(count, jnp.finfo(log_probs.dtype).tiny)
