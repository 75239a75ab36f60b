"""What every ensemble method provides to the training loop, and the pieces they share.

A method owns: the model (an architecture built in the method's layer form), the initial
variables, the training loss, and `predict`, which returns member logits `[M, B, C]` for every
method so that one evaluation path serves all of them. Methods whose members are independent
networks set `vectorized = True`: their parameters, optimiser state and hyperparameters carry a
leading member axis and the training loop maps one member's update over it (`member_map`: `vmap`,
or members one after another for convolutional architectures).

Methods are built from explicit settings (`MethodSettings`, plus a family's own, e.g. the
hyper-batch `HyperBatchSettings`) that methods/registry.py reads from the run config once; a
method never sees the config.

A method may learn hyperparameters during training (a tuner: hyper-batch ensembles). The hooks
are declared here with the defaults of a method without one (`tune_data` is None): the training
loop (training/steps.py) owns the tuner's jit, shardings and validation stream and calls
`tune_update` only where `tune_index` says a tune step follows a train step.

Hyperparameters live in the train state as arrays with a leading member axis `[M]`, never as Python
floats, so members may differ (hyper-deep pools) inside one compiled program.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.preprocess import preprocess
from hyper_ensembles.maths import losses
from hyper_ensembles.models.conditioning import Conditioning
from hyper_ensembles.models.kit import LayerKit
from hyper_ensembles.models.layers import PENALTY_COLLECTION
from hyper_ensembles.models.registry import create_model, get_architecture

# Read by the loss for every architecture, in addition to the architecture's own hyperparameters.
LOSS_HPARAMS = ('label_smoothing',)


@dataclasses.dataclass(frozen=True, eq=False)
class MethodSettings:
  """What every method is built from (methods/registry.py reads it from the run config).

  Attributes:
    arch: the architecture's name (models/registry.py).
    num_members: M, the ensemble's members.
    model: the architecture's options (`config.model`: sizes, fast-weight initialisation).
    hparams: `{name: [M] float32}`, one value per member of every hyperparameter the architecture
      and the loss read (`hparam_names(arch)`, in that order); see `resolve_hparams`.
    penalties: whether the training loss includes the layers' penalties (L2). False leaves them
      out of the program altogether (the layers' `sow` calls do nothing), so that benchmarks can
      time the cross-entropy alone; runs always train with them.
  """

  arch: str
  num_members: int
  model: ml_collections.FrozenConfigDict
  hparams: Mapping[str, np.ndarray]
  penalties: bool = True


@dataclasses.dataclass(frozen=True)
class TuneData:
  """The validation stream a tuner reads: tune step j reads batch j of it.

  Attributes:
    batch_size: global batch size of the validation stream.
    config_key: the config field that set `batch_size`, named in errors about it.
  """

  batch_size: int
  config_key: str


class Method(abc.ABC):
  """Base class; subclasses set `name`, `vectorized`, `layer_form`, and the abstract parts."""

  name: ClassVar[str]
  vectorized: ClassVar[bool] = False
  layer_form: ClassVar[str] = 'plain'
  # Members whatever the config asks for (1 for the single model and stn); None: config.num_members.
  fixed_members: ClassVar[int | None] = None

  def __init__(self, settings: MethodSettings, info: DatasetInfo, num_train: int):
    """Builds the model (once, with the kit `layer_kit` returns).

    Args:
      settings: the members, architecture, model options and per-member hyperparameters.
      info: dataset facts (classes, image shape, normalisation).
      num_train: N, the number of training examples; L2 penalties are divided by it.
    """
    self.settings = settings
    self.info = info
    self.num_train = num_train
    self.num_members = settings.num_members
    self.hparam_names = tuple(settings.hparams)
    self._hparams = {name: np.asarray(value) for name, value in settings.hparams.items()}
    self.kit = self.layer_kit()
    self.model: nn.Module = create_model(settings.model, settings.arch, self.kit,
                                         info.num_classes)

  def layer_kit(self) -> LayerKit:
    """The layer form and options the model is built with (subclasses add their form's options)."""
    return LayerKit(form=self.layer_form, num_members=self.num_members,
                    fast_init=self.settings.model.fast_weight_init,
                    fast_std=self.settings.model.fast_weight_std)

  @property
  def unroll_members(self) -> bool:
    """Whether a vectorised method maps members one after another rather than with `vmap`: for
    convolutional architectures, whose vmapped convolutions are slow (methods/member_map.py)."""
    return get_architecture(self.settings.arch).convolutional

  @property
  def num_data_orders(self) -> int:
    """Independent data orders the train stream must provide (M for independent members)."""
    return 1

  # ---- hyperparameters -------------------------------------------------------------------------
  def initial_hparams(self) -> dict[str, jax.Array]:
    """Per-member hyperparameter arrays `{name: [M]}` for the train state."""
    return {name: jnp.asarray(value) for name, value in self._hparams.items()}

  @property
  def zero_hparams(self) -> frozenset[str]:
    """Fixed hyperparameters that are 0 for every member (`Conditioning.zero`: layers skip them).

    The train state's hparams keep the values they were created with, so this holds for the run.
    """
    return frozenset(name for name, value in self._hparams.items() if not np.any(value))

  # ---- variables -------------------------------------------------------------------------------
  @abc.abstractmethod
  def init_variables(self, rng: jax.Array) -> dict:
    """Model variables as returned by `Module.init` (fast weights still boxed)."""

  # ---- tuner: optional; these defaults are a method without one ------------------------------
  def init_tuner(self, rng: jax.Array) -> Any:
    """Initial `TrainState.tuner` (checkpointed with the state); None without a tuner."""
    return None

  @property
  def tune_data(self) -> TuneData | None:
    """The validation stream the tuner reads; None: no tuner, and the loop runs no tune step."""
    return None

  def tune_index(self, step: int) -> int | None:
    """Tune-step number j that follows train step `step` (0-based), or None if none follows."""
    return None

  def tune_update(self, state, batch: dict) -> tuple[Any, dict]:
    """One tune step `(state, validation batch) → (state, metrics)`; pure (the loop jits it)."""
    raise NotImplementedError(f'method {self.name!r} has no tuner')

  def tuner_summaries(self, state) -> dict[str, float]:
    """Scalars logged with the train metrics (the tuner's current state); {} without a tuner."""
    return {}

  def final_hyperparameters(self, state) -> dict | None:
    """What the tuner learned, recorded as `hyperparameters` in metrics.json; None without one."""
    return None

  # ---- training --------------------------------------------------------------------------------
  @abc.abstractmethod
  def loss(self, params, model_state: dict, hparams: dict, tuner: Any, batch: dict,
           rng: jax.Array) -> tuple[jax.Array, tuple[dict, dict]]:
    """Training loss; returns (loss, (new model_state, scalar metrics)).

    For vectorized methods this is one member's loss and every argument lacks the member axis.
    """

  def _apply_train(self, params, model_state, images, labels, cond: Conditioning,
                   smoothing: jax.Array, rng: jax.Array, tile: int | None = None
                   ) -> tuple[jax.Array, tuple[dict, dict]]:
    """Shared by all methods: forward in train mode, cross-entropy + Σ penalties / N.

    With `tile` = M, images `[1, B, ...]` are augmented once and then tiled over the M members
    (as the official batch-ensemble code does: every member sees the same augmented image).
    """
    k_aug, k_dropout = jax.random.split(rng)
    x = preprocess(images, self.info, k_aug)
    if tile is not None:
      x, labels = tile_members(x, tile), tile_members(labels, tile)
    # A collection that is not mutable makes the layers' `sow` a no-op: no penalty is built.
    sown = [PENALTY_COLLECTION] if self.settings.penalties else []
    logits, mutated = self.model.apply(
        {'params': params, **model_state}, x, cond, train=True, rngs={'dropout': k_dropout},
        mutable=[*model_state, *sown])
    cross_entropy = losses.cross_entropy(logits, labels, smoothing).mean()
    penalty = losses.total_penalty(mutated.get(PENALTY_COLLECTION, {})) / self.num_train
    loss = cross_entropy + penalty
    metrics = {
        'loss': loss, 'cross_entropy': cross_entropy, 'penalty': penalty,
        'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels),
    }
    return loss, ({k: mutated[k] for k in model_state}, metrics)

  # ---- prediction ------------------------------------------------------------------------------
  @abc.abstractmethod
  def predict(self, state, images: jax.Array) -> jax.Array:
    """Member logits `[M, B, C]` for uint8 images `[B, H, W, C]` (evaluation mode)."""


def tile_members(x: jax.Array, num_members: int) -> jax.Array:
  """`[1 or M, B, ...]` → `[M, B, ...]` (a broadcast; XLA does not copy it)."""
  return jnp.broadcast_to(x, (num_members, *x.shape[1:]))


def hparam_names(arch: str) -> tuple[str, ...]:
  """Every hyperparameter a method on `arch` reads: the architecture's, then the loss's."""
  return (*get_architecture(arch).hparams, *LOSS_HPARAMS)


def resolve_hparams(arch: str, given: Mapping[str, Any], overrides: Mapping[str, Any],
                    num_members: int) -> dict[str, np.ndarray]:
  """`{name: [M] float32}` for `hparam_names(arch)`: `overrides` (per member) over `given`.

  Args:
    arch: the architecture's name.
    given: `config.hparams`, one value per hyperparameter; must name exactly `hparam_names(arch)`.
    overrides: per-member values `{name: [M] sequence or scalar}` (hyper-deep pools).
    num_members: M.

  Raises:
    ValueError: unknown or missing names, a wrong number of member values, or a negative or
      non-finite value.
  """
  names = hparam_names(arch)
  unknown = sorted(set(given) - set(names))
  missing = sorted(set(names) - set(given))
  if unknown or missing:
    raise ValueError(
        f'config.hparams for arch={arch!r} must set exactly {sorted(names)}'
        f' (unknown: {unknown}, missing: {missing})')
  unknown = sorted(set(overrides) - set(names))
  if unknown:
    raise ValueError(f'Per-member hyperparameters {unknown} are not hyperparameters of '
                     f'arch={arch!r} (it has {sorted(names)})')
  for name, value in overrides.items():
    shape = np.shape(value)
    if shape not in ((), (num_members,)):
      raise ValueError(
          f'member_hparams.{name} has {shape[0] if shape else 0} values but the run has '
          f'{num_members} members (config.num_members); give one value per member')
  values = {}
  for name in names:
    value = np.asarray(overrides.get(name, given[name]), np.float32)
    values[name] = np.broadcast_to(value, (num_members,)).copy()
  bad = [f'{n}={list(v)}' for n, v in values.items() if not np.all(np.isfinite(v) & (v >= 0))]
  if bad:
    raise ValueError(f'Hyperparameters must be finite and non-negative, got {", ".join(bad)}')
  return values


def split_variables(variables: dict) -> tuple[Any, dict]:
  """(params, model state — e.g. batch_stats) from a variables dict.

  `Module.init` runs with every collection mutable, so it also returns the penalties the layers
  sowed; they are per-call outputs, not state, and are dropped here.
  """
  variables = dict(variables)
  params = variables.pop('params')
  variables.pop(PENALTY_COLLECTION, None)
  return params, variables
