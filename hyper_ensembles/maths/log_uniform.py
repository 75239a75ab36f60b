"""Hyperparameter spaces and the per-member log-uniform distributions over them (docs/design.md §4,
§5).

This module owns
  * `HyperparameterSpace`: the D named hyperparameters and their bounds [λ_min, λ_max], plus the
    log-space normalisation λ̃ ∈ [0, 1] that the hyper-batch embeddings e(λ) consume;
  * `LogUniformParams`: the tunable distribution parameters t = (log a, log b), each `[M, D]`, and
    the functions on them: initialisation (narrow, as the official code does, or whole range, as
    the paper's appendix describes), reparameterised sampling, mean, entropy and the clipping
    projection applied after every tune step;
  * `random_search`: log-uniform draws over the whole space for the hyper-deep ensemble.

Everything that takes distribution parameters is pure `jax.numpy`, safe under `jit`, `vmap` and
`grad`: hyperparameters are always arrays, never Python floats baked into traced code. The space
itself is a hashable, immutable description (Python floats only), so it can be closed over or
passed as a static argument; its `log_min` / `log_max` are rebuilt as arrays on each access.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

# Only log-uniform hyperparameters exist for now. The per-hyperparameter `scale` field is kept so
# that linear-scale ones can be added without changing the space's shape or its callers.
SUPPORTED_SCALES = ('log',)

# Below this |log b − log a| the mean uses a Taylor series instead of (b − a)/(log b − log a):
# the direct form is 0/0 at b = a and its autodiff gradient cancels catastrophically for small
# widths (terms ~1/r that nearly cancel), while the cubic series is accurate to ~r⁴/120 here.
_MEAN_SERIES_THRESHOLD = 1e-2


@dataclasses.dataclass(frozen=True)
class HyperparameterSpace:
  """An immutable description of D named hyperparameters with bounds [λ_min, λ_max].

  Column j of every `[..., D]` hyperparameter array is hyperparameter `names[j]`. Build with
  `from_config`, which orders names **sorted alphabetically** (see there); the plain constructor
  keeps the order it is given. Look columns up with `index(name)` rather than hard-coding
  positions.

  Attributes:
    names: hyperparameter names, one per column.
    mins: lower bounds λ_min (> 0), as Python floats.
    maxs: upper bounds λ_max (> λ_min), as Python floats.
    scales: per-hyperparameter scale; only 'log' (log-uniform) is supported for now.
  """

  names: tuple[str, ...]
  mins: tuple[float, ...]
  maxs: tuple[float, ...]
  scales: tuple[str, ...] | None = None

  def __post_init__(self):
    # Normalise to tuples of builtins so that the space is hashable and compares by value, which
    # is what lets it be a static jit argument.
    names = tuple(self.names)
    mins = tuple(self.mins)
    maxs = tuple(self.maxs)
    scales = ('log',) * len(names) if self.scales is None else tuple(self.scales)
    if not names:
      raise ValueError('a HyperparameterSpace needs at least one hyperparameter')
    if not len(names) == len(mins) == len(maxs) == len(scales):
      raise ValueError(
          f'names, mins, maxs and scales must have equal lengths, got {len(names)}, '
          f'{len(mins)}, {len(maxs)} and {len(scales)}')
    for name in names:
      if not isinstance(name, str) or not name:
        raise ValueError(f'hyperparameter names must be non-empty strings, got {name!r}')
    if len(set(names)) != len(names):
      raise ValueError(f'hyperparameter names must be unique, got {names}')
    mins = tuple(_as_bound(name, 'min', v) for name, v in zip(names, mins))
    maxs = tuple(_as_bound(name, 'max', v) for name, v in zip(names, maxs))
    for name, lo, hi, scale in zip(names, mins, maxs, scales):
      if scale not in SUPPORTED_SCALES:
        raise ValueError(
            f'hyperparameter {name!r}: scale must be one of {SUPPORTED_SCALES}, got {scale!r} '
            '(only log-uniform hyperparameters are implemented)')
      if lo <= 0:
        raise ValueError(f'hyperparameter {name!r}: min must be > 0 on a log scale, got {lo!r}')
      if hi <= lo:
        raise ValueError(
            f'hyperparameter {name!r}: max must be > min, got min={lo!r}, max={hi!r}')
    object.__setattr__(self, 'names', names)
    object.__setattr__(self, 'mins', mins)
    object.__setattr__(self, 'maxs', maxs)
    object.__setattr__(self, 'scales', scales)

  @classmethod
  def from_config(cls, config: Any) -> HyperparameterSpace:
    """Builds a space from `{name: (min, max)}` or `{name: {'min': .., 'max': ..}}`.

    Both plain mappings and ml_collections `ConfigDict`s work, and the two value forms may be
    mixed. A dict value may also carry `'scale'` (default 'log'); a sequence value may be
    `(min, max)` or `(min, max, scale)`.

    Names are ordered alphabetically, whatever the input's order. ConfigDict iterates its keys
    sorted, so insertion order cannot be recovered from it; sorting everywhere makes a plain dict
    and the equivalent ConfigDict give the same columns.

    Args:
      config: the mapping described above.

    Returns:
      The validated space.

    Raises:
      ValueError: on a malformed entry or invalid bounds; the message names the hyperparameter.
    """
    if not hasattr(config, 'items'):
      raise TypeError(f'expected a mapping of hyperparameter name -> bounds, got {type(config)}')
    entries = dict(config.items())
    names, mins, maxs, scales = [], [], [], []
    for name in sorted(entries):
      lo, hi, scale = _parse_entry(name, entries[name])
      names.append(name)
      mins.append(lo)
      maxs.append(hi)
      scales.append(scale)
    return cls(tuple(names), tuple(mins), tuple(maxs), tuple(scales))

  @property
  def dim(self) -> int:
    """D, the number of hyperparameters."""
    return len(self.names)

  @property
  def log_min(self) -> jax.Array:
    """log λ_min, `[D]`, in the default float dtype."""
    # jnp canonicalises the float64 logs to float32 unless x64 is enabled.
    return jnp.asarray(np.log(np.asarray(self.mins, dtype=np.float64)))

  @property
  def log_max(self) -> jax.Array:
    """log λ_max, `[D]`, in the default float dtype."""
    return jnp.asarray(np.log(np.asarray(self.maxs, dtype=np.float64)))

  def index(self, name: str) -> int:
    """The column of hyperparameter `name` in `[..., D]` arrays."""
    try:
      return self.names.index(name)
    except ValueError:
      raise KeyError(f'unknown hyperparameter {name!r}; the space has {self.names}') from None


def _as_bound(name: str, which: str, value: Any) -> float:
  """A finite Python float bound, or an error naming the hyperparameter."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f'hyperparameter {name!r}: {which} must be a real number, got {value!r}')
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f'hyperparameter {name!r}: {which} must be finite, got {value!r}')
  return value


def _parse_entry(name: str, entry: Any) -> tuple[Any, Any, str]:
  """(min, max, scale) from one config entry, unvalidated except for its shape."""
  if isinstance(entry, Mapping) or hasattr(entry, 'items'):
    entry = dict(entry.items())
    unknown = set(entry) - {'min', 'max', 'scale'}
    if unknown or 'min' not in entry or 'max' not in entry:
      raise ValueError(
          f"hyperparameter {name!r}: expected keys 'min', 'max' (and optionally 'scale'), "
          f'got {sorted(entry)}')
    return entry['min'], entry['max'], entry.get('scale', 'log')
  if isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) in (2, 3):
    scale = entry[2] if len(entry) == 3 else 'log'
    return entry[0], entry[1], scale
  raise ValueError(
      f"hyperparameter {name!r}: expected (min, max) or {{'min': .., 'max': ..}}, got {entry!r}")


def normalize(space: HyperparameterSpace, lam: jax.Array) -> jax.Array:
  """λ̃ = (log λ − log λ_min)/(log λ_max − log λ_min), the embeddings' input.

  Maps λ_min to 0 and λ_max to 1 per coordinate; values outside the range map outside [0, 1]
  (no clipping, so the map stays smooth and invertible).

  Args:
    space: the hyperparameter space.
    lam: hyperparameter values `[..., D]`, all > 0.

  Returns:
    λ̃ with the shape of `lam`.
  """
  log_min, log_max = space.log_min, space.log_max
  return (jnp.log(lam) - log_min) / (log_max - log_min)


@flax.struct.dataclass
class LogUniformParams:
  """Per-member log-uniform distributions: member k, coordinate j is log-U[a_kj, b_kj].

  A pytree (both fields are leaves), so it can be differentiated, optimised with optax and
  checkpointed as is.

  Attributes:
    log_a: log lower bounds, `[M, D]`.
    log_b: log upper bounds, `[M, D]`.
  """

  log_a: jax.Array
  log_b: jax.Array


def project(params: LogUniformParams, space: HyperparameterSpace) -> LogUniformParams:
  """Clips the bounds so that log λ_min ≤ log a < log b ≤ log λ_max, per coordinate.

  As the official code: ε = 1e-6·(log λ_max − log λ_min)/2; log a is clipped into
  [log λ_min, log λ_max − 2ε], then log b into [log a + ε, log λ_max]. So b − a never vanishes and
  log(log b − log a) in the entropy stays finite. We additionally floor ε at one float ulp of the
  bounds' magnitude, which only binds for spaces narrower than ~1e-6 relative width and keeps
  b > a true after rounding. Idempotent; NaN inputs stay NaN (a diverged tune step should show).

  Args:
    params: bounds `[M, D]` (any leading shape `[..., D]` works).
    space: the hyperparameter space.

  Returns:
    The projected parameters, same shapes and dtype.
  """
  dtype = jnp.result_type(params.log_a, params.log_b)
  log_min = space.log_min.astype(dtype)
  log_max = space.log_max.astype(dtype)
  ulp = jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(log_min), jnp.abs(log_max))
  eps = jnp.maximum(1e-6 * (log_max - log_min) / 2, ulp)
  log_a = jnp.clip(params.log_a.astype(dtype), log_min, log_max - 2 * eps)
  # clip applies the min bound first and the max bound last, so even if rounding made
  # log a + ε exceed log λ_max the result is log λ_max, still > log a.
  log_b = jnp.clip(params.log_b.astype(dtype), log_a + eps, log_max)
  return LogUniformParams(log_a=log_a, log_b=log_b)


def init_narrow(
    rng: jax.Array,
    space: HyperparameterSpace,
    num_members: int,
    width: float = 0.2,
    std: float = 0.02,
) -> LogUniformParams:
  """Narrow per-member distributions around the range mean (official ResNet code; the default).

  Per (k, j): λ₀ ~ N(m_j, std²) with m_j the mean of log-U[λ_min_j, λ_max_j]; a = max(λ₀ − width,
  1e-8), b = λ₀ + width, in λ space (not log space); then `project`. "Narrow" is relative: when
  the range is not much wider than 2·width in λ space (e.g. [1e-5, 0.2]) the clipped interval
  covers most or all of it. The official code uses one m for all coordinates (the mean over j of
  m_j, identical there because all ranges are equal); we keep m_j per coordinate so that spaces
  with different ranges start each member inside its own range.

  Args:
    rng: a PRNG key.
    space: the hyperparameter space.
    num_members: M.
    width: half-width of the initial interval, in λ units.
    std: standard deviation of the interval centre λ₀, in λ units.

  Returns:
    Projected `LogUniformParams` with `[M, D]` leaves.
  """
  whole = LogUniformParams(log_a=space.log_min, log_b=space.log_max)
  centre = mean(whole)  # [D]
  lam0 = centre + std * jax.random.normal(rng, (num_members, space.dim), dtype=centre.dtype)
  lower = jnp.maximum(lam0 - width, 1e-8)
  # Only a centre drawn below −width (impossible with sane std) could make b ≤ 0; guarding keeps
  # the log finite and lets `project` put the interval at the bottom of the range.
  upper = jnp.maximum(lam0 + width, 1e-8)
  return project(LogUniformParams(log_a=jnp.log(lower), log_b=jnp.log(upper)), space)


def init_whole_range(space: HyperparameterSpace, num_members: int) -> LogUniformParams:
  """Every member's distribution covers the whole range (paper appendix); then `project`.

  Args:
    space: the hyperparameter space.
    num_members: M.

  Returns:
    `LogUniformParams` with `[M, D]` leaves, a = λ_min and b = λ_max.
  """
  shape = (num_members, space.dim)
  whole = LogUniformParams(
      log_a=jnp.broadcast_to(space.log_min, shape), log_b=jnp.broadcast_to(space.log_max, shape))
  return project(whole, space)


def init_log_centred(
    rng: jax.Array,
    space: HyperparameterSpace,
    num_members: int,
    half_width: float = 0.05,
    std: float = 0.01,
    spread: float = 0.0,
) -> LogUniformParams:
  """Narrow per-member distributions around the range's centre in log space (its median).

  Per (k, j): c_k ~ N(m_j + spread·w_j·(k/(M − 1) − ½), (std·w_j)²) with m_j = (log λ_min_j +
  log λ_max_j)/2, and [log a, log b] = [c_k − half_width·w_j, c_k + half_width·w_j], with
  w_j = log λ_max_j − log λ_min_j; then `project`. `spread` > 0 places the members' centres evenly
  over that fraction of the log range, from the most to the least regularised.
  The official `init_narrow` centres at the arithmetic mean of the range, which for a range of
  several decades sits in its top decade (72 on [1e-3, 1e3]); the log-space centre is the median
  of the log-uniform prior over the range, the uninformed starting point on the scale the tuner
  works on. Widths and jitter are fractions of the log range, so they mean the same for every
  hyperparameter.

  Args:
    rng: a PRNG key.
    space: the hyperparameter space.
    num_members: M.
    half_width: half-width of the initial interval, as a fraction of the log range.
    std: standard deviation of the centre, as a fraction of the log range.
    spread: distance between the first and last member's centre, as a fraction of the log range.

  Returns:
    Projected `LogUniformParams` with `[M, D]` leaves.
  """
  log_min, log_max = space.log_min, space.log_max
  width = log_max - log_min
  offsets = jnp.linspace(-0.5, 0.5, num_members) if num_members > 1 else jnp.zeros((1,))
  centre = ((log_min + log_max) / 2 + spread * width * offsets[:, None].astype(width.dtype)
            + std * width * jax.random.normal(rng, (num_members, space.dim), dtype=width.dtype))
  return project(LogUniformParams(log_a=centre - half_width * width,
                                  log_b=centre + half_width * width), space)


def sample(rng: jax.Array, params: LogUniformParams, num_samples: int) -> jax.Array:
  """Reparameterised samples λ = exp(log a + u (log b − log a)), u ~ U(0, 1).

  Differentiable w.r.t. `params` (u is the only randomness). Coordinates and samples are
  independent.

  Args:
    rng: a PRNG key.
    params: bounds with `[M, D]` leaves.
    num_samples: samples per member, S.

  Returns:
    λ `[M, S, D]`.
  """
  log_a, log_b = params.log_a, params.log_b
  num_members, dim = log_a.shape
  u = jax.random.uniform(rng, (num_members, num_samples, dim), dtype=log_a.dtype)
  return jnp.exp(log_a[:, None, :] + u * (log_b - log_a)[:, None, :])


def mean(params: LogUniformParams) -> jax.Array:
  """Mean of each log-uniform, (b − a)/(log b − log a); the limit a when b → a.

  Safe (finite value and gradient) at b = a, and for b < a it returns the mean of the
  log-uniform on [b, a]; shapes broadcast, so `[M, D]` in gives `[M, D]` out.

  Args:
    params: bounds, `[M, D]` leaves (any matching shapes).

  Returns:
    The means, `[M, D]`.
  """
  log_a, log_b = params.log_a, params.log_b
  r = log_b - log_a
  wide = jnp.abs(r) >= _MEAN_SERIES_THRESHOLD
  # Each branch sees a harmless stand-in where it is not selected: the 0/0 of the direct form (or
  # an overflowing series) would otherwise leak NaN into the gradient through jnp.where.
  r_wide = jnp.where(wide, r, 1.0)
  r_narrow = jnp.where(wide, 0.0, r)
  direct = (jnp.exp(log_b) - jnp.exp(log_a)) / r_wide
  # a·expm1(r)/r expanded to third order.
  series = jnp.exp(log_a) * (1 + r_narrow * (1 / 2 + r_narrow * (1 / 6 + r_narrow / 24)))
  return jnp.where(wide, direct, series)


def entropy(params: LogUniformParams) -> jax.Array:
  """Differential entropy of each log-uniform, H = log(log b − log a) + (log a + log b)/2.

  Requires b > a (guaranteed after `project`); -inf or NaN otherwise.

  Args:
    params: bounds, `[M, D]` leaves.

  Returns:
    H, `[M, D]`.
  """
  log_a, log_b = params.log_a, params.log_b
  return jnp.log(log_b - log_a) + (log_a + log_b) / 2


def log_entropy(params: LogUniformParams) -> jax.Array:
  """Differential entropy of log λ (uniform on [log a, log b]): H = log(log b − log a).

  The entropy of λ itself (`entropy`) adds (log a + log b)/2, whose gradient (½ on each bound)
  favours larger λ whatever the data say; under Adam that constant pull moves both bounds up by
  about the learning rate per tune step wherever the NLL gradient is weak. The entropy of log λ,
  the scale the distributions are defined on, rewards width only.

  Args:
    params: bounds, `[M, D]` leaves.

  Returns:
    H, `[M, D]`.
  """
  return jnp.log(params.log_b - params.log_a)


# config.hyper.entropy → the entropy the tune loss rewards.
ENTROPIES = {'lambda': entropy, 'log_lambda': log_entropy}


def mean_entropy(params: LogUniformParams, kind: str = 'lambda') -> jax.Array:
  """Entropy averaged over members and hyperparameters: the scalar the tune loss uses.

  Args:
    params: bounds, `[M, D]` leaves.
    kind: 'lambda' (entropy of λ, the official code's) or 'log_lambda' (entropy of log λ).
  """
  if kind not in ENTROPIES:
    raise ValueError(f'Unknown entropy {kind!r}; choose one of: {", ".join(ENTROPIES)}')
  return jnp.mean(ENTROPIES[kind](params))


def random_search(
    rng_or_seed: jax.Array | int, space: HyperparameterSpace, num_samples: int
) -> jax.Array:
  """Draws `num_samples` settings log-uniformly over the whole space (hyper-deep random search).

  Each coordinate is independent and log-uniform on [λ_min_j, λ_max_j]. The same seed (or key)
  always gives the same settings.

  Args:
    rng_or_seed: a PRNG key or an integer seed.
    space: the hyperparameter space.
    num_samples: number of settings, κ (or κ − 1 when the default setting is added separately).

  Returns:
    λ `[num_samples, D]`.
  """
  if isinstance(rng_or_seed, numbers.Integral) and not isinstance(rng_or_seed, bool):
    rng = jax.random.PRNGKey(int(rng_or_seed))
  else:
    rng = rng_or_seed
  whole = LogUniformParams(log_a=space.log_min[None], log_b=space.log_max[None])
  return sample(rng, whole, num_samples)[0]
