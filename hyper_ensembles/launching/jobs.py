"""What launching is about: a job (one run to train), what it came to, and how launchers are asked.

Shared by every launcher (local.py, ray_launcher.py; registry.py picks one by name) and by their
callers (hyper_deep/, scripts/sweep.py). A job is one run: its directory and its resolved config.
Every launcher skips a finished run (`workdir.is_finished`, after checking that its config.json
is the one asked for), so re-running a list resumes it, and keeps the layout of a
run directory: a run trained either way writes the same files (the Ray one adds its LOG_FILE).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import ml_collections

from hyper_ensembles.runs import workdir as workdir_lib

LOG_FILE = 'launch.log'  # the Ray launcher's per-run log: the command, its stdout and stderr
# Ray keeps unix sockets under its temp dir, whose path must stay short (about 100 bytes).
DEFAULT_RAY_TEMP_DIR = '/tmp/ray_he'

Echo = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """How runs are launched. Only `launcher` matters for `local`.

  Attributes:
    launcher: a name in registry.LAUNCHERS ('local' or 'ray'; registry.create checks it).
    ray_address: '' starts a Ray on this machine for the runs and stops it at the end; otherwise
      the address of a running cluster (`auto`, `HOST:6379` or `ray://HOST:10001`).
    max_concurrent: runs at a time; 0 = the CPU count here (local Ray), unlimited on a cluster
      (its resources decide).
    cpus_per_run: CPUs each run asks Ray for and the threads its JAX may use; 0 = this machine's
      CPUs / max_concurrent on a local Ray, 1 on a cluster.
    gpus_per_run: GPUs each run asks Ray for (Ray sets CUDA_VISIBLE_DEVICES for it).
    env: extra environment variables of every run's subprocess.
    temp_dir: Ray's temp dir when it is started here.
    init_timeout_s: how long starting (or connecting to) Ray may take before it is an error.
  """

  launcher: str = 'local'
  ray_address: str = ''
  max_concurrent: int = 0
  cpus_per_run: int = 0
  gpus_per_run: float = 0.0
  env: Mapping[str, str] = dataclasses.field(default_factory=dict)
  temp_dir: str = DEFAULT_RAY_TEMP_DIR
  init_timeout_s: float = 120.0

  def __post_init__(self):
    for name in ('max_concurrent', 'cpus_per_run', 'gpus_per_run'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
    if self.init_timeout_s <= 0:
      raise ValueError(f'init_timeout_s must be > 0, got {self.init_timeout_s}')


@dataclasses.dataclass(frozen=True)
class Job:
  """One run: `name` as reports show it, its directory, and the config it trains."""

  name: str
  workdir: str
  config: ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What a job came to: `done` (complete before), `trained` (now) or `failed`.

  `metrics` is the run's metrics.json (None when failed, or when the run's directory is not visible
  from here); `log` the Ray launcher's log file; `error` why it failed.
  """

  job: Job
  status: str
  metrics: dict[str, Any] | None = None
  log: str | None = None
  error: str | None = None
  seconds: float = 0.0


class RunsFailedError(RuntimeError):
  """Some runs failed (the others finished); the message names each one's workdir and log."""

  def __init__(self, failed: Sequence[Outcome], total: int):
    self.failed = tuple(failed)
    lines = [f'{len(failed)} of {total} runs failed (the others finished; re-running resumes):']
    for o in failed:
      lines.append(f'  {o.job.name}: {o.error}\n    workdir {o.job.workdir}\n    log {o.log}')
    super().__init__('\n'.join(lines))


class Launcher(Protocol):
  def start(self) -> None:
    """Starts what the launcher needs before the caller starts JAX's threads (Ray forks its
    processes: forking after JAX's backend is up risks a deadlock). Idempotent; may do nothing."""

  def run(self, jobs: Sequence[Job]) -> list[Outcome]: ...

  def close(self) -> None: ...


# A finished run (training wrote its final metrics.json): the one definition, runs/workdir.py's.
is_complete = workdir_lib.is_finished


def finished_outcome(job: Job) -> Outcome:
  """The outcome of a complete job; its config.json must be the one asked for."""
  workdir_lib.prepare_workdir(job.workdir, job.config)  # raises WorkdirConflictError otherwise
  metrics = workdir_lib.read_json(os.path.join(job.workdir, workdir_lib.METRICS_FILE))
  return Outcome(job=job, status='done', metrics=metrics)
