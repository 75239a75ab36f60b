"""Hyper-deep ensembles (DESIGN.md §5): the paper's whole procedure as one resumable pipeline.

This module owns the pipeline's stages, the seeds and hyperparameters of every network it trains,
and the layout of its directory DIR. Every network is trained by the ordinary training loop: a group
of pool members is one `deep` run (`train.train_and_evaluate`) whose members carry their own
hyperparameters (`config.member_hparams`, one value per member) and seeds (member k of a run with
seed s is seeded s + k: init, dropout and data order). So a pool member trained inside a vectorised
chunk is exactly the single model trained alone with its seed and setting, each chunk resumes from
its own checkpoints, and its config.json records every member's hyperparameters.

Stages (`run_pipeline`; a re-run skips what is done and resumes what is not):

  pool          κ settings — the config's default setting first, then `hparams.random_search` with
                `hyper_deep.sampling_seed` — each with its own init, trained as vectorised chunks of
                `hyper_deep.chunk_size` members (chunk_size 1: one run per member, i.e. a sweep).
  select        greedy selection with replacement on validation NLL (selection.py) → hyper ens.
  stratify      every distinct selected setting trained with K − 1 further inits (the pool member
                is the K-th); greedy selection again over these ≤ K² networks → hyper-deep ens.
  retrain       (hyper_deep.retrain_on_train_plus_val) every distinct member of the hyper-deep
                ensemble trained again, same seed and setting, on train ∪ validation
                (`config.data.train_on_validation`; the paper's final models see 100 % of the
                training data) → the final ensemble: the retrained networks with the weights the
                selection gave the originals. Selection itself only ever sees held-out validation
                predictions of networks trained on train alone.
  fixed_init    (hyper_deep.fixed_init_baseline) the same κ settings and data orders, but every
                member starts from one shared init (`config.init_seed`); selection → the paper's
                "fixed-init hyper ens".
  deep_baseline the default setting with K inits: exactly what `method=deep` trains.
  evaluate      weighted ensembles (duplicates = weights) on every saved evaluation set →
                DIR/metrics.json and DIR/selection.json.

Retraining (step 4) keeps the number of epochs, so a retrained network takes more steps, and its
L2 penalty ν·‖θ‖²/N uses the larger N (the loss's usual convention). Member k of a run seeded s is
seeded s + k, so only members with consecutive seeds share a vectorised retraining run: the distinct
members, sorted by seed, are cut into runs of consecutive seeds of at most `chunk_size`. A run is
named by its seeds, not by its position among the chosen, so its directory always holds the same
config whichever other members a selection picks. The baselines are not retrained: compare the final
ensemble with `hyper_deep_before_retrain` for the effect of retraining alone. The retrained
ensemble's validation metrics are not held out (its networks trained on validation).

Seeds, with s = config.seed, κ = pool size, K = ensemble size: pool member i has seed s + i; the
j-th extra init (j = 0..K−2) of pool setting i has seed s + κ + i·(K−1) + j, so stratification
never reuses a pool seed and does not depend on which other settings were chosen; the fixed-init
pool's member i has seed s + i (its data order and dropout) and init seed s; the deep baseline has
seeds s .. s + K − 1 (its member 0 is pool member 0); a retrained member keeps its seed.

Layout of DIR:

  config.json                      the pipeline config (the workdir guard compares it on re-runs)
  plan.json                        the κ settings, seeds and search space
  sweep.json                       every run that does not depend on a selection, as config
                                   overrides (scripts/sweep.py prints or runs them)
  pool/members_AAAA_BBBB/          pool members [AAAA, BBBB): an ordinary `deep` run directory
  stratify/setting_IIII/members_*  the extra inits of pool setting IIII
  retrain/seeds_AAAA_BBBB/         (retrain_on_train_plus_val) the chosen members with seeds
                                   [AAAA, BBBB) trained on train ∪ validation; `_init_IIII` added
                                   when they share the init of seed IIII
  fixed_init_pool/members_*        the fixed-init random search
  deep_baseline/                   the deep ensemble of the default setting
  selection/<ensemble>.json        each selection: its candidate pool and the greedy result
  metrics.json                     DESIGN.md §9 for the final hyper-deep ensemble (retrained when
                                   retrain_on_train_plus_val), `retrained_on_train_plus_val`, and
                                   `baselines`: {best_single, hyper_ens, fixed_init_hyper_ens,
                                   deep_ens, hyper_deep_before_retrain (when retrained)}, each with
                                   the same keys (eval sets, num_params, train_seconds)
  predictions/<set>.npz            the final ensemble's picks (duplicates repeated), so their
                                   uniform average is the weighted ensemble
  selection.json                   chosen members: hyperparameters, seeds, weights, NLL history;
                                   when retrained, each hyper-deep member's `retrained` {run, index}
                                   and the list `retrain_runs`
  stages.jsonl                     one line per stage per invocation: ran or skipped

Selection and evaluation read only the saved `predictions/<set>.npz` of the runs, so runs made by
`scripts/sweep.py` on other machines count as done once their directories are copied into DIR.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from hyper_ensembles import evaluation, train
from hyper_ensembles import hparams as hparams_lib
from hyper_ensembles import selection as selection_lib
from hyper_ensembles import workdir as workdir_lib

PLAN_FILE = 'plan.json'
SWEEP_FILE = 'sweep.json'
SELECTION_FILE = 'selection.json'
STAGE_LOG_FILE = 'stages.jsonl'
SELECTION_DIR = 'selection'

# Stage names in order; `run_pipeline(until=...)` stops after the named one.
STAGES = ('pool', 'select', 'stratify', 'retrain', 'fixed_init', 'deep_baseline', 'evaluate')

# Names of the ensembles in metrics.json["baselines"] and selection.json.
HYPER_DEEP = 'hyper_deep'
HYPER_ENS = 'hyper_ens'
FIXED_INIT_HYPER_ENS = 'fixed_init_hyper_ens'
BEST_SINGLE = 'best_single'
DEEP_ENS = 'deep_ens'
HYPER_DEEP_BEFORE_RETRAIN = 'hyper_deep_before_retrain'


# --------------------------------------------------------------------------------------------------
# What gets trained: members, runs and the plan.
# --------------------------------------------------------------------------------------------------


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


def stratify_runs(config: ml_collections.ConfigDict, settings: Settings, plan: Plan,
                  chosen: Sequence[int]) -> dict[int, tuple[Run, ...]]:
  """For each chosen pool index i, the runs of its K − 1 extra inits (empty when K = 1)."""
  k, kappa = settings.ensemble_size, settings.pool_size
  out = {}
  for i in sorted(chosen):
    if k == 1:
      out[i] = ()
      continue
    first_seed = int(config.seed) + kappa + i * (k - 1)
    out[i] = population_runs(f'stratify/setting_{i:04d}', [plan.settings[i]] * (k - 1),
                             first_seed, settings.chunk_size)
  return out


def retrain_runs(members: Sequence[Member], chunk_size: int
                 ) -> tuple[tuple[Run, ...], dict[tuple[int, int], Member]]:
  """Runs retraining the distinct `members` on train ∪ validation, and each one's retrained twin.

  The twins are keyed by `(init_seed, seed)`, which identifies a member of one selection's pool.
  Only members with consecutive seeds and the same `init_seed` share a run (member k of a run
  seeded s is seeded s + k); see the module docstring for the directory names.
  """
  distinct: list[Member] = []
  for m in members:
    if m not in distinct:
      distinct.append(m)
  distinct.sort(key=lambda m: (m.init_seed, m.seed))
  groups: list[list[Member]] = []
  for m in distinct:
    last = groups[-1] if groups else None
    if last and (last[-1].init_seed, last[-1].seed) == (m.init_seed, m.seed):
      raise ValueError(f'Two chosen members share seed {m.seed} (init_seed {m.init_seed}); a '
                       f'retraining run could not tell them apart.')
    if (last and len(last) < chunk_size and last[-1].init_seed == m.init_seed
        and last[-1].seed + 1 == m.seed):
      last.append(m)
    else:
      groups.append([m])
  runs, twins = [], {}
  for group in groups:
    first, init_seed = group[0].seed, group[0].init_seed
    workdir = f'retrain/seeds_{first:04d}_{first + len(group):04d}'
    if init_seed >= 0:
      workdir += f'_init_{init_seed:04d}'
    overrides: dict[str, Any] = {
        'method': 'deep', 'num_members': len(group), 'seed': first, 'init_seed': init_seed,
        'data.train_on_validation': True}
    for name in sorted(group[0].hparams):
      overrides[f'member_hparams.{name}'] = [m.hparams[name] for m in group]
    retrained = tuple(dataclasses.replace(m, run=workdir, index=k) for k, m in enumerate(group))
    for m in retrained:
      twins[(m.init_seed, m.seed)] = m
    runs.append(Run(workdir=workdir, overrides=overrides, members=retrained))
  return tuple(runs), twins


# --------------------------------------------------------------------------------------------------
# Running runs and reading their predictions.
# --------------------------------------------------------------------------------------------------


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with flat `{'a.b': value}` overrides set (lists become tuples)."""
  out = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = out
    for part in parents:
      node = node[part]
    # JSON has no tuples; every sequence field of the config is a tuple.
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return out


def run_config(config: ml_collections.ConfigDict, run: Run) -> ml_collections.ConfigDict:
  return apply_overrides(config, run.overrides)


def is_complete(run_dir: str) -> bool:
  """A finished run: final metrics and validation predictions written (train.py does both)."""
  return (os.path.exists(os.path.join(run_dir, workdir_lib.METRICS_FILE))
          and os.path.exists(os.path.join(run_dir, workdir_lib.PREDICTIONS_DIR, 'validation.npz')))


def ensure_run(config: ml_collections.ConfigDict, workdir: str, run: Run) -> tuple[dict, bool]:
  """Trains `run` unless it is complete; returns (its metrics.json, whether it trained now).

  An unfinished run resumes from its latest checkpoint (train.py). A finished one is not even
  loaded, but its config.json is still checked against the one the plan asks for.
  """
  cfg = run_config(config, run)
  run_dir = os.path.join(workdir, run.workdir)
  if is_complete(run_dir):
    workdir_lib.prepare_workdir(run_dir, cfg)  # raises WorkdirConflictError on a different config
    return workdir_lib.read_json(os.path.join(run_dir, workdir_lib.METRICS_FILE)), False
  logging.info('hyper-deep: training %s (%d members)', run.workdir, len(run.members))
  return train.train_and_evaluate(cfg, run_dir), True


class Predictions:
  """Reads member logits from the runs' `predictions/<set>.npz`, each file once."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

  def _run(self, run: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    key = (run, name)
    if key not in self._cache:
      self._cache[key] = workdir_lib.read_predictions(os.path.join(self.workdir, run), name)
    return self._cache[key]

  def stack(self, members: Sequence[Member], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits `[P, N, C]` of `members` on eval set `name`, and its labels `[N]`."""
    labels = None
    logits = []
    for m in members:
      run_logits, run_labels = self._run(m.run, name)
      if labels is None:
        labels = run_labels
      elif not np.array_equal(labels, run_labels):
        raise ValueError(f'{m.run} has different {name} labels from the other runs')
      logits.append(run_logits[m.index])
    return np.stack(logits), labels

  def eval_sets(self, run: str) -> list[str]:
    """Names of the evaluation sets a run saved predictions for, validation and test first."""
    directory = os.path.join(self.workdir, run, workdir_lib.PREDICTIONS_DIR)
    names = [f[:-4] for f in os.listdir(directory) if f.endswith('.npz')]
    first = [n for n in ('validation', 'test') if n in names]
    return first + sorted(set(names) - set(first))


# --------------------------------------------------------------------------------------------------
# Selection stages.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """A selected ensemble: its candidate pool and the greedy selection over it."""

  pool: tuple[Member, ...]
  result: selection_lib.SelectionResult

  @property
  def members(self) -> tuple[Member, ...]:
    return tuple(self.pool[i] for i in self.result.members)

  def to_json(self) -> dict[str, Any]:
    return {'pool': [m.to_json() for m in self.pool], 'selection': self.result.to_json()}

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> Ensemble:
    return cls(pool=tuple(Member.from_json(m) for m in d['pool']),
               result=selection_lib.SelectionResult.from_json(d['selection']))

  def summary(self) -> dict[str, Any]:
    """What selection.json says about this ensemble."""
    members = []
    for member, count, weight in zip(self.members, self.result.counts, self.result.weights):
      members.append({**member.to_json(), 'count': int(count), 'weight': float(weight)})
    return {
        'members': members,
        'picks': [self.pool[i].to_json() | {'pool_index': int(i)} for i in self.result.picks],
        'validation_nll_history': [float(v) for v in self.result.nll_history],
        'validation_nll': float(self.result.nll),
        'pool_size': len(self.pool),
    }


def select(predictions: Predictions, pool: Sequence[Member], max_distinct: int) -> Ensemble:
  val_logits, labels = predictions.stack(pool, 'validation')
  result = selection_lib.greedy_selection(val_logits, labels, max_distinct)
  return Ensemble(pool=tuple(pool), result=result)


def best_single(ensemble: Ensemble) -> Ensemble:
  """The best single model of a pool: greedy selection's first pick (lowest validation NLL)."""
  first = ensemble.result.picks[0]
  result = selection_lib.SelectionResult(
      members=(first,), counts=(1,), picks=(first,), nll_history=(ensemble.result.nll_history[0],))
  return Ensemble(pool=ensemble.pool, result=result)


# --------------------------------------------------------------------------------------------------
# The pipeline.
# --------------------------------------------------------------------------------------------------


class _StageLog:
  """Appends one JSON line per stage to DIR/stages.jsonl (and the absl log): ran or skipped."""

  def __init__(self, workdir: str, write: bool):
    self.path = os.path.join(workdir, STAGE_LOG_FILE)
    self.write = write
    self.t0 = time.time()

  def record(self, stage: str, ran: bool, **info) -> None:
    now = time.time()
    entry = {'stage': stage, 'action': 'ran' if ran else 'skipped', 'time': now,
             'seconds': round(now - self.t0, 3), **info}
    self.t0 = now
    logging.info('hyper-deep stage %s: %s %s', stage, entry['action'], info or '')
    if self.write:
      # Appended, not rewritten atomically: a line is the unit, and a torn last line is harmless.
      with open(self.path, 'a') as f:
        f.write(json.dumps(entry, sort_keys=True) + '\n')


def read_stage_log(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, STAGE_LOG_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plan_pipeline(config: ml_collections.ConfigDict, workdir: str) -> tuple[Settings, Plan]:
  """Validates the config, guards DIR, and writes (or re-reads) plan.json and sweep.json.

  The κ settings are drawn once and stored; later invocations (and sweep.py) read them back, so
  the plan never depends on re-drawing random numbers the same way.
  """
  settings = read_settings(config)
  workdir_lib.prepare_workdir(workdir, config)
  is_main = jax.process_index() == 0
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


def run_pipeline(config: ml_collections.ConfigDict, workdir: str, *,
                 until: str | None = None) -> dict[str, Any]:
  """Runs (or resumes) the hyper-deep ensemble pipeline in `workdir`.

  Args:
    config: a config from configs/default.py (any method name; `hyper_deep` is the usual one).
    workdir: DIR; see the module docstring for its layout.
    until: stop after this stage (one of `STAGES`); None runs everything.

  Returns:
    The contents of DIR/metrics.json, or {} when stopped before `evaluate`.
  """
  if until is not None and until not in STAGES:
    raise ValueError(f'until must be one of {STAGES}, got {until!r}')
  settings, plan = plan_pipeline(config, workdir)
  is_main = jax.process_index() == 0
  log = _StageLog(workdir, is_main)
  predictions = Predictions(workdir)
  k = settings.ensemble_size
  selection_dir = os.path.join(workdir, SELECTION_DIR)

  def train_runs(runs: Sequence[Run]) -> tuple[list[dict], list[str]]:
    results, trained = [], []
    for run in runs:
      metrics, ran = ensure_run(config, workdir, run)
      results.append(metrics)
      if ran:
        trained.append(run.workdir)
    return results, trained

  def selection_stage(name: str, pool: Sequence[Member], inputs_changed: bool
                      ) -> tuple[Ensemble, bool]:
    """Reuses selection/<name>.json when its pool is the same and no input was retrained."""
    path = os.path.join(selection_dir, f'{name}.json')
    if os.path.exists(path) and not inputs_changed:
      stored = Ensemble.from_json(workdir_lib.read_json(path))
      if stored.pool == tuple(pool):
        return stored, False
    ensemble = select(predictions, pool, k)
    if is_main:
      workdir_lib.write_json(path, ensemble.to_json())
    return ensemble, True

  def stop(stage: str) -> bool:
    return until == stage

  # 1. Random search.
  pool_metrics, trained = train_runs(plan.pool)
  changed = bool(trained)
  log.record('pool', changed, trained=trained, runs=len(plan.pool))
  if stop('pool'):
    return {}
  pool_members = tuple(m for run in plan.pool for m in run.members)

  # 2. Greedy selection over the random search: the hyper ensemble.
  hyper_ens, ran = selection_stage(HYPER_ENS, pool_members, changed)
  changed |= ran
  log.record('select', ran, members=[m.seed for m in hyper_ens.members],
             counts=list(hyper_ens.result.counts))
  if stop('select'):
    return {}

  # 3. Stratification: K inits per distinct selected setting, then selection again.
  strat_metrics: list[dict] = []
  if settings.stratify:
    chosen = sorted(pool_members.index(m) for m in hyper_ens.members)
    extra = stratify_runs(config, settings, plan, chosen)
    runs = [run for i in chosen for run in extra[i]]
    strat_metrics, trained = train_runs(runs)
    stratified_pool = []
    for i in chosen:
      stratified_pool.append(pool_members[i])
      stratified_pool.extend(m for run in extra[i] for m in run.members)
    hyper_deep, ran = selection_stage(HYPER_DEEP, stratified_pool, changed or bool(trained))
    changed |= ran or bool(trained)
    log.record('stratify', bool(trained) or ran, trained=trained,
               members=[m.seed for m in hyper_deep.members],
               counts=list(hyper_deep.result.counts))
  else:
    hyper_deep = hyper_ens
    log.record('stratify', False, disabled=True)
  if stop('stratify'):
    return {}

  # 4. Retraining: the hyper-deep ensemble's members on train ∪ validation, same seeds, settings.
  retrain_metrics: list[dict] = []
  retrain_plan: tuple[Run, ...] = ()
  twins: dict[tuple[int, int], Member] = {}
  if settings.retrain:
    retrain_plan, twins = retrain_runs(hyper_deep.members, settings.chunk_size)
    retrain_metrics, trained = train_runs(retrain_plan)
    changed |= bool(trained)
    log.record('retrain', bool(trained), trained=trained, runs=len(retrain_plan),
               members=sorted(seed for _, seed in twins))
  else:
    log.record('retrain', False, disabled=True)
  if stop('retrain'):
    return {}

  # Fixed-init random search (baseline).
  fixed_metrics: list[dict] = []
  fixed_ens = None
  if plan.fixed_init:
    fixed_metrics, trained = train_runs(plan.fixed_init)
    fixed_members = tuple(m for run in plan.fixed_init for m in run.members)
    fixed_ens, ran = selection_stage(FIXED_INIT_HYPER_ENS, fixed_members, bool(trained))
    changed |= ran or bool(trained)
    log.record('fixed_init', bool(trained) or ran, trained=trained)
  else:
    log.record('fixed_init', False, disabled=True)
  if stop('fixed_init'):
    return {}

  # Deep ensemble of the default setting (baseline).
  deep_metrics = None
  if plan.deep_baseline is not None:
    (deep_metrics,), trained = train_runs([plan.deep_baseline])
    changed |= bool(trained)
    log.record('deep_baseline', bool(trained), trained=trained)
  else:
    log.record('deep_baseline', False, disabled=True)
  if stop('deep_baseline'):
    return {}

  # 5. Final evaluation.
  metrics_path = os.path.join(workdir, workdir_lib.METRICS_FILE)
  selection_path = os.path.join(workdir, SELECTION_FILE)
  if not changed and os.path.exists(metrics_path) and os.path.exists(selection_path):
    log.record('evaluate', False)
    return workdir_lib.read_json(metrics_path)

  eval_sets = predictions.eval_sets(plan.pool[0].workdir)
  per_member = pool_metrics[0]['num_params'] // len(plan.pool[0].members)
  seconds = lambda results: float(sum(r['train_seconds'] for r in results))

  def weighted_metrics(members: Sequence[Member], weights: Sequence[float], train_seconds: float
                       ) -> dict[str, Any]:
    # The same evaluation path as every run: OOD sets get detection metrics against test and
    # corrupted sets their aggregates.
    out: dict[str, Any] = evaluation.metrics_from_predictions(
        {name: predictions.stack(members, name) for name in eval_sets}, weights)
    out['num_params'] = int(per_member * len(members))
    # The cost of producing the ensemble: every run its candidates came from.
    out['train_seconds'] = train_seconds
    return out

  def ensemble_metrics(ensemble: Ensemble, train_seconds: float) -> dict[str, Any]:
    return weighted_metrics(ensemble.members, ensemble.result.weights, train_seconds)

  search_seconds = seconds(pool_metrics)
  ensembles = {HYPER_DEEP: hyper_deep, HYPER_ENS: hyper_ens, BEST_SINGLE: best_single(hyper_ens)}
  baselines = {
      BEST_SINGLE: ensemble_metrics(ensembles[BEST_SINGLE], search_seconds),
      HYPER_ENS: ensemble_metrics(hyper_ens, search_seconds),
  }
  if fixed_ens is not None:
    ensembles[FIXED_INIT_HYPER_ENS] = fixed_ens
    baselines[FIXED_INIT_HYPER_ENS] = ensemble_metrics(fixed_ens, seconds(fixed_metrics))
  if deep_metrics is not None:
    baselines[DEEP_ENS] = deep_metrics
  hyper_deep_seconds = search_seconds + seconds(strat_metrics)
  final_picks = [hyper_deep.pool[i] for i in hyper_deep.result.picks]
  if settings.retrain:
    # The selection's weights, applied to the retrained twins of the members it chose.
    twin = lambda m: twins[(m.init_seed, m.seed)]
    results = weighted_metrics([twin(m) for m in hyper_deep.members], hyper_deep.result.weights,
                               hyper_deep_seconds + seconds(retrain_metrics))
    baselines[HYPER_DEEP_BEFORE_RETRAIN] = ensemble_metrics(hyper_deep, hyper_deep_seconds)
    final_picks = [twin(m) for m in final_picks]
  else:
    results = ensemble_metrics(hyper_deep, hyper_deep_seconds)
  results['retrained_on_train_plus_val'] = settings.retrain
  results['baselines'] = baselines

  summary = {
      'ensemble_size': k,
      'pool_size': settings.pool_size,
      'stratified': settings.stratify,
      'retrained_on_train_plus_val': settings.retrain,
      'search_space': {n: [lo, hi] for n, lo, hi in zip(
          settings.space.names, settings.space.mins, settings.space.maxs)},
      **{name: ensemble.summary() for name, ensemble in ensembles.items()},
  }
  if settings.retrain:
    summary['retrain_runs'] = [run.workdir for run in retrain_plan]
    for member in summary[HYPER_DEEP]['members']:
      retrained = twins[(member['init_seed'], member['seed'])]
      member['retrained'] = {'run': retrained.run, 'index': retrained.index}
  if is_main:
    # The picks, a member chosen twice appearing twice: their uniform average is the weighted
    # ensemble, so tools that read any run's predictions/ re-evaluate this one correctly too.
    for name in eval_sets:
      workdir_lib.write_predictions(workdir, name, *predictions.stack(final_picks, name))
    workdir_lib.write_json(selection_path, summary)
    workdir_lib.write_json(metrics_path, results)
  log.record('evaluate', True)
  for name, values in [(HYPER_DEEP, results), *baselines.items()]:
    test = values.get('test')
    if test:
      logging.info('hyper-deep %s: test nll %.4f  accuracy %.4f  ece %.4f', name, test['nll'],
                   test['accuracy'], test['ece'])
  return results
