"""Averaging member predictions into an ensemble predictive (docs/design.md §2): the one copy.

This module owns the one place where member logits `[M, N, C]` become the ensemble's
log-predictive log p̄ `[N, C]`, with p̄ = Σ_k w_k softmax(z_k) and w uniform (1/M) by default, and
its negative log-likelihood. Every caller uses it: the hyper-batch tune loss inside jit and under
grad, the host metrics of metrics.json (metrics.py), temperature fitting and greedy selection.

The functions are written against the array namespace of their input: JAX arrays (and tracers)
are computed with `jax.numpy` and `jax.nn`, so the tune loss stays traceable and differentiable;
anything else with NumPy, so host evaluation keeps the float64 its callers give it and never
touches a device. Only the two reductions that JAX implements with custom gradients
(`log_softmax`, `logsumexp`) have a per-namespace form; the rest is shared.

We average *probabilities*, never logits: log p̄ = logsumexp_k(log_softmax(z_k) + log w_k). Weights
exist because greedy selection with replacement (hyper-deep ensembles) produces duplicates, which
act as integer weights; a zero weight must behave exactly like dropping that member.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_jax(x: Any) -> bool:
  """True for JAX arrays and tracers (under jit / grad), which must stay in jax.numpy."""
  return isinstance(x, jax.Array)


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
  """log_softmax over the last axis, with max subtraction so exp never overflows."""
  shifted = x - np.max(x, axis=-1, keepdims=True)
  return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _np_logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
  """logsumexp tolerating -inf entries (from zero weights) as long as one entry is finite."""
  x_max = np.max(x, axis=axis, keepdims=True)
  out = x_max + np.log(np.sum(np.exp(x - x_max), axis=axis, keepdims=True))
  return np.squeeze(out, axis=axis)


def member_log_probs(logits: Any) -> Any:
  """Per-member log-probabilities: log_softmax over the last (class) axis.

  Args:
    logits: member logits `[M, N, C]` (any leading shape works); a JAX or NumPy array.

  Returns:
    Log-probabilities with the same shape, dtype and array type as `logits`.
  """
  if _is_jax(logits):
    return jax.nn.log_softmax(logits, axis=-1)
  return _np_log_softmax(np.asarray(logits))


def _log_weights(xp, weights: Any, num_members: int, dtype) -> Any:
  """Normalised log member weights `[M]`; -inf (not NaN) where a weight is zero."""
  if weights is None:
    return xp.full((num_members,), -xp.log(num_members), dtype=dtype)
  weights = xp.asarray(weights, dtype=dtype)
  if weights.shape != (num_members,):
    raise ValueError(f'weights must have shape [M={num_members}], got {weights.shape}')
  weights = weights / xp.sum(weights)
  positive = weights > 0
  # The inner where keeps log's argument positive so that the gradient w.r.t. a zero weight is 0
  # rather than 0 * inf = NaN; the outer where then sets the value to log 0 = -inf, which
  # logsumexp turns into a zero contribution.
  safe = xp.where(positive, weights, 1.0)
  return xp.where(positive, xp.log(safe), -xp.inf)


def ensemble_log_probs(logits: Any, weights: Any = None) -> Any:
  """Log of the (weighted) mean of member softmax probabilities.

  log p̄ = logsumexp_k(log_softmax(z_k) + log w_k), with w = weights / Σ weights.

  Args:
    logits: member logits `[M, N, C]` (any shape `[M, ..., C]` works). A JAX array or tracer is
      computed in JAX; anything else in NumPy (float64 stays float64).
    weights: optional non-negative member weights `[M]`, normalised here so they need not sum to
      one (integer duplicate counts from greedy selection are fine). Zero weights are allowed and
      are equivalent to dropping the member; at least one weight must be positive (this is not
      checked, so that the function stays traceable; metrics.py checks on the host). Default:
      uniform, log w_k = −log M.

  Returns:
    log p̄ with shape `logits.shape[1:]`, e.g. `[N, C]`, in float32 or wider.
  """
  jax_input = _is_jax(logits)
  xp = jnp if jax_input else np
  logits = xp.asarray(logits)
  if logits.ndim < 2:
    raise ValueError(f'logits must be [M, ..., C], got shape {logits.shape}')
  # Low-precision (bf16/fp16) logits are upcast: log_softmax and logsumexp lose too much in 8
  # mantissa bits for an NLL that the tune step differentiates.
  logits = logits.astype(xp.promote_types(logits.dtype, xp.float32))
  num_members = logits.shape[0]
  log_w = _log_weights(xp, weights, num_members, logits.dtype)
  log_w = log_w.reshape((num_members,) + (1,) * (logits.ndim - 1))
  terms = member_log_probs(logits) + log_w
  return jax.nn.logsumexp(terms, axis=0) if jax_input else _np_logsumexp(terms, axis=0)


def ensemble_nll(logits: Any, labels: Any, weights: Any = None, mask: Any = None) -> Any:
  """Ensemble negative log-likelihood −mean_n log p̄(y_n | x_n), a scalar.

  Args:
    logits: member logits `[M, N, C]`, as in `ensemble_log_probs` (JAX or NumPy).
    labels: integer labels `[N]` in [0, C).
    weights: optional member weights `[M]`, as in `ensemble_log_probs`.
    mask: optional `[N]` bool or 0/1 array; the mean is taken over rows where it is set (e.g. to
      ignore padding of a final partial batch); non-binary values act as row weights. Masked-out
      rows may carry any label, including out-of-range padding values such as -1. If no row is
      set the result is 0, not NaN.

  Returns:
    Scalar NLL in the dtype of the log-probabilities (a 0-d array).
  """
  log_probs = ensemble_log_probs(logits, weights)
  xp = jnp if _is_jax(log_probs) else np
  labels = xp.asarray(labels)
  if labels.shape != log_probs.shape[:-1]:
    raise ValueError(f'labels must have shape {log_probs.shape[:-1]}, got {labels.shape}')
  if mask is None:
    picked = xp.take_along_axis(log_probs, labels[..., None].astype(xp.int32), axis=-1)
    return -xp.mean(picked[..., 0])
  mask = xp.asarray(mask)
  if mask.shape != labels.shape:
    raise ValueError(f'mask must have shape {labels.shape}, got {mask.shape}')
  keep = mask.astype(bool)
  # Padding rows may hold invalid labels: replace them before indexing so nothing out of range is
  # ever gathered, then exclude them from the sum.
  safe_labels = xp.where(keep, labels, 0).astype(xp.int32)
  picked = xp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
  weight = mask.astype(log_probs.dtype)
  total = xp.sum(xp.where(keep, picked, 0.0) * weight)
  count = xp.sum(weight)
  return -total / xp.maximum(count, xp.finfo(log_probs.dtype).tiny)
