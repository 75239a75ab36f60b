"""Method registry: the names users type (`--config=...:method=NAME`) → method classes, and the
one place that reads a run config into the settings a method is built from.

`create_method` reads the config once: the settings every method takes (`MethodSettings`) and
those of the method's family (`HyperBatchSettings` for hyper-batch ensembles and stn), validated
here so that a bad value fails before anything is built, with a message naming the config field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.streams import steps_per_epoch
from hyper_ensembles.maths import log_uniform as hp
from hyper_ensembles.methods.base import Method, MethodSettings, resolve_hparams
from hyper_ensembles.methods.batch import BatchEnsemble
from hyper_ensembles.methods.deep import DeepEnsemble, SingleModel
from hyper_ensembles.methods.hyper_batch import (
  INITS,
  HyperBatchEnsemble,
  HyperBatchSettings,
  SelfTuningNetwork,
)


def _no_family_settings(config, settings: MethodSettings, num_train: int) -> dict:
  return {}


def _hyper_batch_settings(config: ml_collections.ConfigDict, settings: MethodSettings,
                          num_train: int) -> dict:
  """`{'hyper': HyperBatchSettings}` from `config.hyper` (the constructor's keyword argument)."""
  cfg = config.hyper
  if not cfg.space:
    raise ValueError(
        f'config.hyper.space is empty for arch={config.arch!r}: add the tuned hyperparameters '
        f'{{name: (min, max)}} to HYPER_SPACES in configs/default.py')
  space = hp.HyperparameterSpace.from_config(cfg.space)
  unknown = sorted(set(space.names) - set(settings.hparams))
  if unknown:
    raise ValueError(
        f'config.hyper.space names hyperparameters {unknown} that arch={config.arch!r} does '
        f'not read; choose among {sorted(settings.hparams)}')
  if cfg.init not in INITS:
    raise ValueError(f'Unknown config.hyper.init {cfg.init!r}; choose one of: {", ".join(INITS)}')
  if cfg.tune_every_steps < 1 or cfg.tune_warmup_epochs < 0 or cfg.eval_samples < 0:
    raise ValueError(
        'config.hyper needs tune_every_steps >= 1, tune_warmup_epochs >= 0 and '
        f'eval_samples >= 0, got {cfg.tune_every_steps}, {cfg.tune_warmup_epochs} and '
        f'{cfg.eval_samples}')
  if cfg.entropy not in hp.ENTROPIES:
    raise ValueError(f'Unknown config.hyper.entropy {cfg.entropy!r}; choose one of: '
                     f'{", ".join(hp.ENTROPIES)}')
  # Only the 'log_centred' start reads its two fields (configs recorded before they existed lack
  # them).
  log_centred = cfg.init == 'log_centred'
  return {'hyper': HyperBatchSettings(
      space=space, init=cfg.init,
      init_half_width=float(cfg.init_half_width) if log_centred else 0.0,
      init_member_spread=float(cfg.init_member_spread) if log_centred else 0.0,
      tau=float(cfg.tau), entropy=cfg.entropy, tune_learning_rate=cfg.tune_learning_rate,
      tune_every_steps=int(cfg.tune_every_steps),
      # In train steps, with the train stream's epoch length.
      tune_warmup_steps=round(
          cfg.tune_warmup_epochs * steps_per_epoch(num_train, int(config.batch_size))),
      validation_batch_size=int(cfg.validation_batch_size),
      eval_samples=int(cfg.eval_samples), tie_uv=bool(cfg.tie_uv),
      embedding_std=float(cfg.embedding_std), embedding_hidden=int(cfg.embedding_hidden),
      l2_with_fast_weights=bool(cfg.l2_with_fast_weights))}


@dataclasses.dataclass(frozen=True)
class Registered:
  """A method class and the reader of its family's settings: (config, MethodSettings, N) → the
  constructor's keyword arguments beyond (settings, info, num_train)."""

  cls: type[Method]
  family_settings: Callable[[ml_collections.ConfigDict, MethodSettings, int], dict] = (
      _no_family_settings)


METHODS: dict[str, Registered] = {
    'single': Registered(SingleModel),
    'deep': Registered(DeepEnsemble),
    'batch': Registered(BatchEnsemble),
    'hyper_batch': Registered(HyperBatchEnsemble, _hyper_batch_settings),
    # The self-tuning-network baseline: hyper_batch with M = 1.
    'stn': Registered(SelfTuningNetwork, _hyper_batch_settings),
}


def _registered(name: str) -> Registered:
  if name not in METHODS:
    raise ValueError(f'Unknown method {name!r}; choose one of: {", ".join(sorted(METHODS))}')
  return METHODS[name]


def get_method_class(name: str) -> type[Method]:
  return _registered(name).cls


def member_hparams_from_config(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """`{name: per-member values}` from `config.member_hparams`; empty entries mean "not set"."""
  given = config.get('member_hparams') or {}
  return {name: tuple(values) for name, values in given.items() if len(values)}


def method_settings(config: ml_collections.ConfigDict, cls: type[Method],
                    hparam_values: dict | None = None, penalties: bool = True) -> MethodSettings:
  """The settings every method takes, from `arch`, `num_members`, `model`, `hparams` and
  `member_hparams` (or `hparam_values`, per-member values that take its place); `penalties` as
  in `MethodSettings`."""
  members = int(config.num_members) if cls.fixed_members is None else cls.fixed_members
  if hparam_values is None:
    hparam_values = member_hparams_from_config(config)
  return MethodSettings(
      arch=config.arch, num_members=members, model=ml_collections.FrozenConfigDict(config.model),
      hparams=resolve_hparams(config.arch, dict(config.hparams), hparam_values, members),
      penalties=penalties)


def create_method(config: ml_collections.ConfigDict, info: DatasetInfo, num_train: int,
                  hparam_values: dict | None = None, penalties: bool = True) -> Method:
  """The method `config.method` names, built from the settings read from `config`.

  Args:
    config: the run config; read here only.
    info: dataset facts (classes, image shape, normalisation).
    num_train: N, the number of training examples.
    hparam_values: optional per-member values `{name: [M] sequence}` overriding `config.hparams`;
      defaults to the non-empty entries of `config.member_hparams`, so a hyper-deep pool chunk is
      an ordinary run whose config.json records every member's hyperparameters.
    penalties: False trains on the cross-entropy alone (`MethodSettings.penalties`; benchmarks).
  """
  registered = _registered(config.method)
  settings = method_settings(config, registered.cls, hparam_values, penalties)
  family = registered.family_settings(config, settings, num_train)
  return registered.cls(settings, info, num_train, **family)
