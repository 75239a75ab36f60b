"""What every ensemble method provides to the training loop, and the pieces they share.

A method owns: the model (an architecture built in the method's layer form), the initial
variables, the training loss, and `predict`, which returns member logits `[M, B, C]` for every
method so that one evaluation path serves all of them. Methods whose members are independent
networks set `vectorized = True`: their parameters, optimiser state and hyperparameters carry a
leading member axis and the training loop `vmap`s one member's update over it.

Hyperparameters live in the train state as arrays with a leading member axis `[M]`, never as Python
floats, so members may differ (hyper-deep pools) inside one compiled program.
"""

from __future__ import annotations

import abc
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


class Method(abc.ABC):
  """Base class; subclasses set `name`, `vectorized`, `layer_form`, and the abstract parts."""

  name: ClassVar[str]
  vectorized: ClassVar[bool] = False
  layer_form: ClassVar[str] = 'plain'

  def __init__(self, config: ml_collections.ConfigDict, info: DatasetInfo, num_train: int,
               hparam_values: dict[str, Any] | None = None):
    """Builds the model.

    Args:
      config: the run config (uses `arch`, `num_members`, `model`, `hparams`).
      info: dataset facts (classes, image shape, normalisation).
      num_train: N, the number of training examples; L2 penalties are divided by it.
      hparam_values: optional per-member values `{name: [M] sequence}` overriding `config.hparams`
        (used by vectorised hyper-deep random-search pools). Defaults to the non-empty entries of
        `config.member_hparams`, so a pool chunk is an ordinary run whose config.json records
        every member's hyperparameters.
    """
    self.config = config
    self.info = info
    self.num_train = num_train
    self.num_members = self.members_from_config(config)
    self.hparam_names = (*get_architecture(config.arch).hparams, *LOSS_HPARAMS)
    self.kit = LayerKit(
        form=self.layer_form, num_members=self.num_members,
        fast_init=config.model.fast_weight_init, fast_std=config.model.fast_weight_std)
    self.model: nn.Module = create_model(config.model, config.arch, self.kit, info.num_classes)
    if hparam_values is None:
      hparam_values = member_hparams_from_config(config)
    self._hparams = self._resolve_hparams(config, hparam_values)

  @classmethod
  def members_from_config(cls, config: ml_collections.ConfigDict) -> int:
    return int(config.num_members)

  @property
  def num_data_orders(self) -> int:
    """Independent data orders the train stream must provide (M for independent members)."""
    return 1

  # ---- hyperparameters -------------------------------------------------------------------------
  def _resolve_hparams(self, config, overrides) -> dict[str, np.ndarray]:
    given = dict(config.hparams)
    unknown = sorted(set(given) - set(self.hparam_names))
    missing = sorted(set(self.hparam_names) - set(given))
    if unknown or missing:
      raise ValueError(
          f'config.hparams for arch={config.arch!r} must set exactly {sorted(self.hparam_names)}'
          f' (unknown: {unknown}, missing: {missing})')
    unknown = sorted(set(overrides) - set(self.hparam_names))
    if unknown:
      raise ValueError(f'Per-member hyperparameters {unknown} are not hyperparameters of '
                       f'arch={config.arch!r} (it has {sorted(self.hparam_names)})')
    for name, value in overrides.items():
      shape = np.shape(value)
      if shape not in ((), (self.num_members,)):
        raise ValueError(
            f'member_hparams.{name} has {shape[0] if shape else 0} values but the run has '
            f'{self.num_members} members (config.num_members); give one value per member')
    values = {}
    for name in self.hparam_names:
      value = np.asarray(overrides.get(name, given[name]), np.float32)
      values[name] = np.broadcast_to(value, (self.num_members,)).copy()
    bad = [f'{n}={list(v)}' for n, v in values.items() if not np.all(np.isfinite(v) & (v >= 0))]
    if bad:
      raise ValueError(f'Hyperparameters must be finite and non-negative, got {", ".join(bad)}')
    return values

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

  def init_tuner(self, rng: jax.Array) -> Any:
    """State of a hyperparameter tuner (hyper-batch ensembles); None for other methods."""
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
    logits, mutated = self.model.apply(
        {'params': params, **model_state}, x, cond, train=True, rngs={'dropout': k_dropout},
        mutable=[*model_state, PENALTY_COLLECTION])
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


def member_hparams_from_config(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """`{name: per-member values}` from `config.member_hparams`; empty entries mean "not set"."""
  given = config.get('member_hparams') or {}
  return {name: tuple(values) for name, values in given.items() if len(values)}


def split_variables(variables: dict) -> tuple[Any, dict]:
  """(params, model state — e.g. batch_stats) from a variables dict.

  `Module.init` runs with every collection mutable, so it also returns the penalties the layers
  sowed; they are per-call outputs, not state, and are dropped here.
  """
  variables = dict(variables)
  params = variables.pop('params')
  variables.pop(PENALTY_COLLECTION, None)
  return params, variables
