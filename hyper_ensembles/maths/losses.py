"""Training losses: per-row cross-entropy with per-row label smoothing, and penalty collection."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: jax.Array | float = 0.0
                  ) -> jax.Array:
  """Cross-entropy per row, `[...]`, against labels smoothed by `smoothing` (broadcast per row).

  Smoothed target: (1 − ε)·onehot + ε/C. `smoothing` may be a scalar, per member or per example.
  """
  log_probs = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  smoothing = jnp.asarray(smoothing, log_probs.dtype)
  # ε·(mean over classes of −log p) + (1 − ε)·(−log p_y); equal to CE with the smoothed target.
  return (1.0 - smoothing) * nll - smoothing * jnp.mean(log_probs, axis=-1)


def total_penalty(penalties) -> jax.Array:
  """Sum of everything the layers sowed into the `penalties` collection."""
  return sum((jnp.sum(leaf) for leaf in jax.tree.leaves(penalties)), jnp.zeros((), jnp.float32))
