"""Table 1 of the paper, end to end: the runs every row needs, in a resumable order, and the table.

Rows (K = 3 each): single, deep ensemble, hyper ens (greedy selection from the random-search pool,
no stratification), fixed-init hyper ens, hyper-deep ensemble, batch ensemble, STN, hyper-batch
ensemble. Four rows are ordinary runs (single, batch, stn, hyper_batch: one job each per arch and
seed); the other four come out of one hyper-deep pipeline per arch and seed (hyper_deep/: its
metrics.json is the hyper-deep ensemble, its `baselines` hold deep_ens, hyper_ens and
fixed_init_hyper_ens).

Layout under ROOT (one directory per run or pipeline, docs/design.md §12-§13):

  ROOT/<arch>/<method>/seed_<s>/        single, batch, stn, hyper_batch
  ROOT/<arch>/hyper_deep/seed_<s>/      the pipeline (size full); `hyper_deep_fast` for size fast,
                                        whose κ differs (the ordinary runs are the same in both)

Seeds: table seed s trains with config.seed = 1000·s, and its pipeline draws its random search with
`hyper_deep.sampling_seed = s`. A run's member k is seeded seed + k and a pipeline uses seeds up to
seed + κ·K (§13), so with a stride of 1000 no two seeds of a row share a network.

Order: every seed of single first, then batch, stn, hyper_batch (the cheap rows), then the
pipelines, so an interrupted run still leaves complete rows; within a group, archs then seeds in the
order asked for. Finished runs are skipped (runs/workdir.is_finished, after the config guard), and
a pipeline resumes its own stages, so re-running the same command continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from hyper_ensembles import hyper_deep
from hyper_ensembles.launching import jobs, registry
from hyper_ensembles.reporting import table as table_lib
from hyper_ensembles.reporting import table1 as report
from hyper_ensembles.runs import workdir as workdir_lib

ARCHS = ('mlp', 'lenet')
SIZES = ('full', 'fast', 'smoke')  # full: the paper's κ = 50; fast: κ = 10; smoke: seconds
SEED_STRIDE = 1000
# Ordinary runs, cheapest first (the order they are trained in).
RUN_METHODS = ('single', 'batch', 'stn', 'hyper_batch')
PIPELINE = 'hyper_deep'


@dataclasses.dataclass(frozen=True)
class TableRow:
  """A row of Table 1: `method` names the run (or the pipeline) it comes from, `baseline` the
  entry of the pipeline's metrics.json `baselines` (None: the run's own metrics.json)."""

  key: str
  label: str
  method: str
  baseline: str | None = None


# In the paper's order.
ROWS = (
    TableRow('single', 'single', 'single'),
    TableRow(hyper_deep.DEEP_ENS, 'deep ensemble', PIPELINE, hyper_deep.DEEP_ENS),
    TableRow(hyper_deep.HYPER_ENS, 'hyper ens', PIPELINE, hyper_deep.HYPER_ENS),
    TableRow(hyper_deep.FIXED_INIT_HYPER_ENS, 'fixed init hyper ens', PIPELINE,
             hyper_deep.FIXED_INIT_HYPER_ENS),
    TableRow(hyper_deep.HYPER_DEEP, 'hyper-deep ensemble', PIPELINE),
    TableRow('batch', 'batch ensemble', 'batch'),
    TableRow('stn', 'STN', 'stn'),
    TableRow('hyper_batch', 'hyper-batch ensemble', 'hyper_batch'),
)
ROW_KEYS = tuple(r.key for r in ROWS)

# configs/table1.py's get_config: 'arch=…,method=…[,fast][,smoke]' → a locked config. Passed in by
# the script: configs/ is not part of the package.
ConfigFactory = Callable[[str], ml_collections.ConfigDict]
Echo = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Study:
  """What to reproduce: archs, table seeds, ROOT, size and rows (keys of ROWS)."""

  archs: Sequence[str]
  seeds: Sequence[int]
  root: str
  size: str = 'full'
  rows: Sequence[str] = ROW_KEYS

  def __post_init__(self):
    _check_names('arch', self.archs, ARCHS)
    _check_names('size', [self.size], SIZES)
    _check_names('row', self.rows, ROW_KEYS)
    if not self.seeds:
      raise ValueError('give at least one seed')
    bad = [s for s in self.seeds if not 0 <= int(s) < SEED_STRIDE]
    if bad:
      raise ValueError(f'seeds must be in [0, {SEED_STRIDE}), got {bad}')
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f'seeds repeat: {list(self.seeds)}')

  @property
  def methods(self) -> list[str]:
    """The run methods and the pipeline the chosen rows need, in training order."""
    needed = {r.method for r in ROWS if r.key in self.rows}
    return [m for m in (*RUN_METHODS, PIPELINE) if m in needed]


def _check_names(what: str, names: Sequence[str], valid: Sequence[str]) -> None:
  unknown = [n for n in names if n not in valid]
  if unknown or not names:
    raise ValueError(f'Unknown {what} {unknown or "(none given)"}; choose from: '
                     f'{", ".join(valid)}')


@dataclasses.dataclass(frozen=True)
class Unit:
  """One thing to train: an ordinary run (a launcher job) or a hyper-deep pipeline."""

  arch: str
  method: str
  seed: int  # the table seed (config.seed = SEED_STRIDE · seed)
  workdir: str
  config: ml_collections.ConfigDict

  @property
  def name(self) -> str:
    return f'{self.arch}/{self.method}/seed_{self.seed}'

  @property
  def is_pipeline(self) -> bool:
    return self.method == PIPELINE


def config_arg(arch: str, method: str, size: str) -> str:
  """The configs/table1.py argument of one run."""
  return f'arch={arch},method={method}' + ('' if size == 'full' else f',{size}')


def unit_dir(root: str, arch: str, method: str, seed: int, size: str) -> str:
  name = f'{method}_fast' if method == PIPELINE and size == 'fast' else method
  return os.path.join(root, arch, name, f'seed_{seed}')


def make_config(get_config: ConfigFactory, arch: str, method: str, seed: int, size: str
                ) -> ml_collections.ConfigDict:
  config = get_config(config_arg(arch, method, size))
  with config.unlocked():
    config.seed = SEED_STRIDE * seed
    if method == PIPELINE:
      config.hyper_deep.sampling_seed = seed  # an independent random search per table seed
  return config


def plan(study: Study, get_config: ConfigFactory) -> list[Unit]:
  """Everything the study trains, in training order (module docstring)."""
  return [Unit(arch, method, seed, unit_dir(study.root, arch, method, seed, study.size),
               make_config(get_config, arch, method, seed, study.size))
          for method in study.methods for arch in study.archs for seed in study.seeds]


# --------------------------------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Progress:
  """What happened to one unit in this invocation: `done` (finished before) or `trained`."""

  name: str
  status: str
  seconds: float = 0.0


def _job(unit: Unit) -> jobs.Job:
  return jobs.Job(name=unit.name, workdir=unit.workdir, config=unit.config)


class PrefixedEcho:
  """The launcher's echo: while a pipeline runs, its runs' lines are prefixed with its name."""

  def __init__(self, echo: Echo):
    self.echo = echo
    self.prefix = ''

  def __call__(self, message: str) -> None:
    self.echo(self.prefix + message)


def train_runs(units: Sequence[Unit], launcher: jobs.Launcher, one_at_a_time: bool, echo: Echo
               ) -> list[Progress]:
  """Ordinary runs through the open launcher: one at a time (each reported when it ends; the
  local launcher), or all at once (Ray, which reports each start and end itself)."""
  out = []
  for batch in ([[u] for u in units] if one_at_a_time else [list(units)] if units else []):
    t0 = time.time()
    for o in launcher.run([_job(u) for u in batch]):
      out.append(Progress(o.job.name, o.status, o.seconds))
      if one_at_a_time and o.status == 'trained':
        echo(f'{o.job.name}: finished in {time.time() - t0:.0f} s')
  return out


def pipeline_finished(workdir: str) -> bool:
  """A pipeline whose `evaluate` stage has written its files (the stage's own skip rule)."""
  return all(os.path.isfile(os.path.join(workdir, name))
             for name in (workdir_lib.METRICS_FILE, hyper_deep.SELECTION_FILE))


def is_finished(workdir: str, method: str) -> bool:
  """Whether the run (or, for PIPELINE, the pipeline) in this directory has finished."""
  if method == PIPELINE:
    return pipeline_finished(workdir)
  return workdir_lib.is_finished(workdir)


def train_pipeline(unit: Unit, launcher: jobs.Launcher, echo: PrefixedEcho) -> Progress:
  """One hyper-deep pipeline on the open launcher (its stages resume themselves); skipped once
  finished."""
  if pipeline_finished(unit.workdir):
    workdir_lib.prepare_workdir(unit.workdir, unit.config)  # the config guard (§12)
    echo(f'{unit.name}: done')
    return Progress(unit.name, 'done')
  echo(f'{unit.name}: training the pipeline (stages: {", ".join(hyper_deep.STAGES)})')
  t0 = time.time()
  echo.prefix = f'{unit.name}: '
  try:
    hyper_deep.run_pipeline(unit.config, unit.workdir, runner=launcher)
  finally:
    echo.prefix = ''
  seconds = time.time() - t0
  echo(f'{unit.name}: finished in {seconds:.0f} s')
  return Progress(unit.name, 'trained', seconds)


# --------------------------------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------------------------------


def collect(study: Study, arch: str) -> list[report.RowResults]:
  """Every row of `arch` (all of ROWS, whichever were asked for) from the seeds that finished."""
  out = []
  for row in ROWS:
    seeds, metrics, sources = [], [], []
    for seed in study.seeds:
      workdir = unit_dir(study.root, arch, row.method, seed, study.size)
      if not is_finished(workdir, row.method):
        continue
      values = workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE))
      if row.baseline is not None:
        values = (values.get('baselines') or {}).get(row.baseline)
        if values is None:
          continue
      seeds.append(seed)
      metrics.append(values)
      sources.append(workdir + (f'#baselines.{row.baseline}' if row.baseline else ''))
    out.append(report.RowResults(row.key, row.label, seeds, metrics, sources))
  return out


def git_commit(path: str) -> str:
  """The commit of the checkout at `path` (`-dirty` when it has uncommitted changes)."""
  try:
    commit = subprocess.run(['git', '-C', path, 'rev-parse', 'HEAD'], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', path, 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown (not a git checkout)'
  return commit + ('-dirty' if dirty else '')


def provenance(command: Sequence[str], source_dir: str) -> dict[str, str]:
  return {'command': shlex.join(command), 'commit': git_commit(source_dir),
          'date': datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}


def write_tables(study: Study, results_dir: str, about: dict[str, str]) -> list[str]:
  """results_dir/table1_<arch>.md and .json for every arch of the study; the paths written."""
  os.makedirs(results_dir, exist_ok=True)
  paths = []
  for arch in study.archs:
    rows = collect(study, arch)
    dataset = 'digits (smoke)' if study.size == 'smoke' else 'Fashion-MNIST'
    title = f'Table 1, {dataset} / {arch}, K = 3'
    table = report.build_table(rows, title)
    seeds = ', '.join(map(str, study.seeds))
    text = '\n'.join([
        table_lib.markdown(table), '',
        f'Mean ± standard error over the seeds that finished (of {seeds}; the `seeds` column '
        'gives their number). `validation` NLL: on the validation split, which every protocol '
        'choice and every greedy selection saw (so a selected ensemble is optimistic there); the '
        'other columns: test set; `tempered`: temperature scaling fitted on validation; '
        '`shifted`: the mean over corrupted test sets (`corrupt_mean`); OOD: AUROC of the max '
        'probability, in-distribution positive; disagreement: fraction of test examples where a '
        "member's prediction differs from the ensemble's; train: seconds of training that "
        'produced the row (a pipeline row: every run its candidates came from).', '',
        f'Size `{study.size}`' + (' (κ = 10: a budget deviation from the paper\'s 50)'
                                  if study.size == 'fast' else '') + '.',
        f'Command: `{about["command"]}`  ',
        f'Commit: `{about["commit"]}`  ',
        f'Date: {about["date"]}', ''])
    base = os.path.join(results_dir, f'table1_{arch}')
    with open(base + '.md', 'w') as f:
      f.write(text)
    workdir_lib.write_json(base + '.json', {
        **about, 'arch': arch, 'size': study.size, 'seeds': list(study.seeds),
        'root': study.root, 'rows': report.to_json(rows)})
    paths += [base + '.md', base + '.json']
  return paths


# --------------------------------------------------------------------------------------------------
# The whole study.
# --------------------------------------------------------------------------------------------------


def reproduce(study: Study, get_config: ConfigFactory, results_dir: str, about: dict[str, str],
              options: jobs.LaunchOptions | None = None, table_only: bool = False,
              echo: Echo = print) -> list[Progress]:
  """Trains (or resumes) every unit of the study in order, rewriting the tables after each group
  of runs and each pipeline so that a partial run leaves a current table; returns what happened.

  One launcher serves the whole study: Ray (`ray`) starts once, before anything here starts JAX.
  """
  options = options or jobs.LaunchOptions()
  units = plan(study, get_config)  # every config is built (and checked) before anything trains
  progress: list[Progress] = []
  if not table_only:
    echo(f'table 1: {len(units)} runs and pipelines under {study.root} (size {study.size})')
    launcher_echo = PrefixedEcho(echo)
    with registry.create(options, echo=launcher_echo) as launcher:
      for method in study.methods:
        group = [u for u in units if u.method == method]
        if method == PIPELINE:
          for unit in group:
            progress.append(train_pipeline(unit, launcher, launcher_echo))
            write_tables(study, results_dir, about)
        else:
          progress += train_runs(group, launcher, options.launcher == 'local', echo)
          write_tables(study, results_dir, about)
  for path in write_tables(study, results_dir, about):
    echo(f'table 1: wrote {path}')
  return progress


def summary_line(progress: Sequence[Progress]) -> str:
  trained = [p for p in progress if p.status == 'trained']
  return (f'table 1: {len(trained)} trained now, {len(progress) - len(trained)} already done')


def table_rows(study: Study, arch: str) -> list[dict[str, Any]]:
  """The JSON rows of one arch's table (for callers that want the numbers, e.g. tests)."""
  return report.to_json(collect(study, arch))
