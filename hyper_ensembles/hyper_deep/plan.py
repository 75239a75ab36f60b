"""Stage `plan`: what the pipeline trains before any selection, and DIR's plan.json / sweep.json.

Owns the validated `config.hyper_deep` block (`Settings`), the networks (`Member`) and training runs
(`Run`) of the random search and its baselines (`Plan`), and how settings and seeds become runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from hyper_ensembles.maths import log_uniform as hparams_lib
from hyper_ensembles.runs import workdir as workdir_lib

PLAN_FILE = 'plan.json'
SWEEP_FILE = 'sweep.json'


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained network: where its predictions are and how it was trained.

  Attributes:
    run: the run's directory, relative to the pipeline's DIR.
    index: the member's position along that run's member axis.
    seed: its seed (dropout, data order and, unless `init_seed` >= 0, init) = run seed + index.
    init_seed: -1 when initialised from `seed`; else the seed of the init it shares.
    hparams: its hyperparameter setting `{name: value}`.
  """

  run: str
  index: int
  seed: int
  init_seed: int
  hparams: dict[str, float]

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> Member:
    return cls(run=d['run'], index=int(d['index']), seed=int(d['seed']),
               init_seed=int(d['init_seed']),
               hparams={k: float(v) for k, v in d['hparams'].items()})


@dataclasses.dataclass(frozen=True)
class Run:
  """One call of the training loop: a directory and the config overrides that define it.

  Attributes:
    workdir: relative to the pipeline's DIR.
    overrides: flat `{dotted config key: value}` applied to the pipeline config (lists → tuples).
    members: the networks it trains, in member-axis order.
  """

  workdir: str
  overrides: dict[str, Any]
  members: tuple[Member, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything the pipeline trains before any selection (and so what a sweep may spread out)."""

  settings: tuple[dict[str, float], ...]  # κ settings; [0] is the config's default
  pool: tuple[Run, ...]
  fixed_init: tuple[Run, ...]  # empty unless hyper_deep.fixed_init_baseline
  deep_baseline: Run | None

  def sweep_entries(self) -> list[dict[str, Any]]:
    """The runs as a sweep file: a list of `{'stage', 'workdir', 'overrides'}`."""
    groups = [('pool', self.pool), ('fixed_init', self.fixed_init),
              ('deep_baseline', (self.deep_baseline,) if self.deep_baseline else ())]
    return [{'stage': stage, 'workdir': run.workdir, 'overrides': run.overrides}
            for stage, runs in groups for run in runs]


@dataclasses.dataclass(frozen=True)
class Settings:
  """The validated `config.hyper_deep` block, with defaults resolved."""

  pool_size: int
  ensemble_size: int
  space: hparams_lib.HyperparameterSpace
  sampling_seed: int
  chunk_size: int
  stratify: bool
  retrain: bool
  fixed_init_baseline: bool
  deep_baseline: bool


def hparam_names(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The hyperparameters every member of this config's runs has (the keys of member_hparams)."""
  return tuple(sorted(config.member_hparams))


def read_settings(config: ml_collections.ConfigDict) -> Settings:
  """Validates `config.hyper_deep` (and the parts of the config the pipeline relies on)."""
  hd = config.hyper_deep
  if config.data.get('train_on_validation', False):
    # Selection must score held-out predictions; step 4 sets the option on its own runs only.
    raise ValueError(
        'The hyper-deep pipeline selects on validation predictions, which must be held out: leave '
        'config.data.train_on_validation=False, and set hyper_deep.retrain_on_train_plus_val=True '
        'to retrain the chosen members on train + validation.')
  set_members = sorted(k for k, v in config.member_hparams.items() if len(v))
  if set_members:
    raise ValueError(
        f'The hyper-deep pipeline sets per-member hyperparameters itself; leave '
        f'config.member_hparams empty (got values for {set_members}).')
  if config.init_seed >= 0:
    raise ValueError('The hyper-deep pipeline decides the inits itself; leave config.init_seed=-1.')
  ensemble_size = int(hd.ensemble_size) or int(config.num_members)
  for name, value in (('pool_size', hd.pool_size), ('ensemble_size', ensemble_size),
                      ('chunk_size', hd.chunk_size)):
    if int(value) < 1:
      raise ValueError(f'hyper_deep.{name} must be >= 1, got {value}')
  space = hparams_lib.HyperparameterSpace.from_config(hd.search_space)
  unknown = sorted(set(space.names) - set(hparam_names(config)))
  if unknown:
    raise ValueError(
        f'hyper_deep.search_space names {unknown} that arch={config.arch!r} does not have; '
        f'its hyperparameters are {list(hparam_names(config))}.')
  return Settings(
      pool_size=int(hd.pool_size), ensemble_size=ensemble_size, space=space,
      sampling_seed=int(hd.sampling_seed), chunk_size=int(hd.chunk_size),
      stratify=bool(hd.stratify), retrain=bool(hd.retrain_on_train_plus_val),
      fixed_init_baseline=bool(hd.fixed_init_baseline),
      deep_baseline=bool(hd.deep_baseline))


def default_setting(config: ml_collections.ConfigDict) -> dict[str, float]:
  return {name: float(config.hparams[name]) for name in hparam_names(config)}


def random_settings(config: ml_collections.ConfigDict, settings: Settings
                    ) -> tuple[dict[str, float], ...]:
  """The κ settings of the random search: the default, then κ − 1 log-uniform draws.

  Hyperparameters outside the search space keep their default value in every setting.
  """
  default = default_setting(config)
  out = [default]
  if settings.pool_size > 1:
    draws = np.asarray(hparams_lib.random_search(
        settings.sampling_seed, settings.space, settings.pool_size - 1), np.float64)
    for row in draws:
      out.append({**default, **{n: float(v) for n, v in zip(settings.space.names, row)}})
  return tuple(out)


def population_runs(prefix: str, settings: Sequence[dict[str, float]], first_seed: int,
                    chunk_size: int, init_seed: int = -1) -> tuple[Run, ...]:
  """Members p = 0..P−1 (seed first_seed + p, setting settings[p]) as `deep` runs of ≤ chunk_size.

  Run directories are `<prefix>/members_AAAA_BBBB` for members [AAAA, BBBB).
  """
  runs = []
  for start in range(0, len(settings), chunk_size):
    stop = min(start + chunk_size, len(settings))
    workdir = f'{prefix}/members_{start:04d}_{stop:04d}'
    chunk = settings[start:stop]
    overrides: dict[str, Any] = {
        'method': 'deep', 'num_members': stop - start, 'seed': first_seed + start,
        'init_seed': init_seed}
    for name in sorted(chunk[0]):
      overrides[f'member_hparams.{name}'] = [s[name] for s in chunk]
    members = tuple(
        Member(run=workdir, index=k, seed=first_seed + start + k, init_seed=init_seed,
               hparams=dict(setting))
        for k, setting in enumerate(chunk))
    runs.append(Run(workdir=workdir, overrides=overrides, members=members))
  return tuple(runs)


def make_plan(config: ml_collections.ConfigDict, settings: Settings,
              pool_settings: Sequence[dict[str, float]]) -> Plan:
  seed = int(config.seed)
  pool = population_runs('pool', pool_settings, seed, settings.chunk_size)
  fixed_init = ()
  if settings.fixed_init_baseline:
    fixed_init = population_runs('fixed_init_pool', pool_settings, seed, settings.chunk_size,
                                 init_seed=seed)
  deep_baseline = None
  if settings.deep_baseline:
    k = settings.ensemble_size
    overrides = {'method': 'deep', 'num_members': k, 'seed': seed, 'init_seed': -1,
                 **{f'member_hparams.{n}': [] for n in hparam_names(config)}}
    members = tuple(Member(run='deep_baseline', index=j, seed=seed + j, init_seed=-1,
                           hparams=default_setting(config)) for j in range(k))
    deep_baseline = Run(workdir='deep_baseline', overrides=overrides, members=members)
  return Plan(settings=tuple(pool_settings), pool=pool, fixed_init=fixed_init,
              deep_baseline=deep_baseline)


def plan_pipeline(config: ml_collections.ConfigDict, workdir: str) -> tuple[Settings, Plan]:
  """Validates the config, guards DIR, and writes (or re-reads) plan.json and sweep.json.

  The κ settings are drawn once and stored; later invocations (and sweep.py) read them back, so
  the plan never depends on re-drawing random numbers the same way.
  """
  settings = read_settings(config)
  is_main = jax.process_index() == 0
  workdir_lib.prepare_workdir(workdir, config, is_writer=is_main)
  plan_path = os.path.join(workdir, PLAN_FILE)
  if os.path.exists(plan_path):
    stored = workdir_lib.read_json(plan_path)
    pool_settings = tuple({k: float(v) for k, v in s.items()} for s in stored['settings'])
  else:
    pool_settings = random_settings(config, settings)
  plan = make_plan(config, settings, pool_settings)
  if is_main and not os.path.exists(plan_path):
    workdir_lib.write_json(plan_path, {
        'settings': list(pool_settings),
        'seeds': [int(config.seed) + i for i in range(settings.pool_size)],
        'default_index': 0,
        'sampling_seed': settings.sampling_seed,
        'search_space': {n: [lo, hi] for n, lo, hi in zip(
            settings.space.names, settings.space.mins, settings.space.maxs)},
    })
  sweep_path = os.path.join(workdir, SWEEP_FILE)
  if is_main and not os.path.exists(sweep_path):
    workdir_lib.write_json(sweep_path, plan.sweep_entries())
  return settings, plan
