"""What every layer receives besides its input: per-row hyperparameters and λ̃.

Hyperparameters that vary per member or per example are arrays, never Python floats, so one
compiled program serves every value. Their shape is the *row shape* of the activations they act on:

- plain model (one member, vmapped over members by the deep-ensemble method): `[]`;
- batch ensemble, activations `[M, B, ...]`: `[M, 1]` (one value per member);
- hyper-batch ensemble: `[M, B]` (one value per member and example).

Layers broadcast a value against their activations with `expand_rows`.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Conditioning:
  """Per-row hyperparameter values by name, and the normalised λ̃ `[M, B, D]` (hyper-batch only).

  `zero` names hyperparameters known when the step is traced to be 0 in every row: fixed for the
  run (not sampled) and 0 for every member. Layers skip their work for them (no dropout mask is
  drawn, no L2 term is built), which gives the same numbers as computing with the value 0.
  """

  hparams: dict[str, jax.Array]
  lam_tilde: jax.Array | None = None
  zero: frozenset[str] = flax.struct.field(pytree_node=False, default=frozenset())

  def get(self, name: str) -> jax.Array:
    try:
      return self.hparams[name]
    except KeyError:
      raise KeyError(
          f'Hyperparameter {name!r} is used by the model but not provided; provided: '
          f'{sorted(self.hparams)}') from None


def expand_rows(value: jax.Array, ndim: int) -> jax.Array:
  """Appends trailing unit axes so a row-shaped value broadcasts against an ndim-rank activation."""
  value = jnp.asarray(value)
  return value.reshape(value.shape + (1,) * (ndim - value.ndim))


def member_mean(value: jax.Array) -> jax.Array:
  """Reduces a row-shaped value to one number per member (`[M]`), or a scalar for plain models."""
  value = jnp.asarray(value)
  if value.ndim <= 1:
    return value
  return value.reshape(value.shape[0], -1).mean(axis=1)
