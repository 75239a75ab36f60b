"""The `ray` launcher: runs as parallel subprocesses on Ray core tasks (one task = one run).

Owns starting (or joining) Ray, how many runs go at a time, what each asks Ray for (CPUs, GPUs),
the CPU threads its JAX may use, and the report of what each run came to. The task itself is
ray_task.py. The runs write into their own directories as the local launcher's do, so a cluster's
nodes must see DIR at the same path (a shared filesystem) for the pipeline to read them back; a
plain sweep only needs the directories copied back before the pipeline runs.

With no address, Ray is started here with `max_concurrent` logical CPUs, each run takes one, and
its process is pinned to `cpus_per_run` of this machine's cores: runs never share a core, and
each JAX sizes its thread pool to its share. Ray is started only when some run has work to do, and
stopped on `close`. The runs share a persistent JAX compilation cache under the Ray temp dir
(unless JAX_COMPILATION_CACHE_DIR is set).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from hyper_ensembles.launching import jobs as jobs_lib
from hyper_ensembles.launching import ray_task
from hyper_ensembles.runs import workdir as workdir_lib

# No dashboard, no usage statistics, no log deduplication across runs (each has its own log).
_RAY_ENV = {'RAY_USAGE_STATS_ENABLED': '0', 'RAY_DEDUP_LOGS': '0', 'RAY_DISABLE_DOCKER_CPU_WARNING':
            '1'}


@contextlib.contextmanager
def _deadline(seconds: float, what: str):
  """Raises TimeoutError when the block runs longer than `seconds` (main thread only)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def expire(signum, frame):
    raise TimeoutError(f'{what} took longer than {seconds:g} s')

  previous = signal.signal(signal.SIGALRM, expire)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _cores() -> list[int]:
  """The CPU ids this process may run on (all of them where the OS cannot say)."""
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


class RayLauncher:
  """Trains jobs as Ray tasks; see the module docstring."""

  def __init__(self, options: jobs_lib.LaunchOptions, echo: jobs_lib.Echo = print):
    self.options = options
    self.echo = echo
    self.local = not options.ray_address
    cores = _cores()
    if self.local:
      self.max_concurrent = options.max_concurrent or len(cores)
      self.threads = options.cpus_per_run or max(1, len(cores) // self.max_concurrent)
      # Pin each concurrent slot to its own cores when they suffice.
      fits = self.threads * self.max_concurrent <= len(cores)
      self.slot_cpus = [cores[s * self.threads:(s + 1) * self.threads] if fits else None
                        for s in range(self.max_concurrent)]
    else:
      self.max_concurrent = options.max_concurrent  # 0: the cluster's resources decide
      self.threads = options.cpus_per_run or 1
      self.slot_cpus = None
    self._started = False

  # ---- Ray itself --------------------------------------------------------------------------------

  def _start(self) -> None:
    if self._started:
      return
    for name, value in _RAY_ENV.items():
      os.environ.setdefault(name, value)
    import ray

    kwargs: dict[str, Any] = {'include_dashboard': False, 'log_to_driver': False,
                              'configure_logging': False}
    if self.local:
      what = f'starting a local Ray (temp dir {self.options.temp_dir})'
      # One logical CPU per concurrent run: Ray then runs exactly max_concurrent at a time.
      kwargs.update(num_cpus=self.max_concurrent, _temp_dir=self.options.temp_dir)
    else:
      what = f'connecting to the Ray cluster at {self.options.ray_address}'
      kwargs.update(address=self.options.ray_address)
    self.echo(f'ray: {what}')
    with _deadline(self.options.init_timeout_s, what):
      ray.init(**kwargs)
    self._started = True

  def close(self) -> None:
    if self._started:
      import ray
      ray.shutdown()
      self._started = False

  def start(self) -> None:
    """Starts (or joins) Ray now rather than at the first job; idempotent."""
    self._start()

  def __enter__(self) -> RayLauncher:
    return self  # Ray starts with the first job (or `start`): a rerun with nothing to do skips it

  def __exit__(self, *exc) -> None:
    self.close()

  # ---- Running jobs ------------------------------------------------------------------------------

  def _spec(self, job: jobs_lib.Job, slot: int) -> dict[str, Any]:
    env = dict(self.options.env)
    if self.local and 'JAX_COMPILATION_CACHE_DIR' not in {**os.environ, **env}:
      # Runs of one sweep compile the same programs; a persistent cache lets all but the first
      # skip XLA compilation (the cached executable is the one compiled: same numbers).
      env['JAX_COMPILATION_CACHE_DIR'] = os.path.join(self.options.temp_dir, 'jax_cache')
    return {'workdir': os.path.abspath(job.workdir),
            'config': workdir_lib.config_to_dict(job.config),
            'log': os.path.join(os.path.abspath(job.workdir), jobs_lib.LOG_FILE),
            'threads': self.threads, 'env': env,
            'cpus': self.slot_cpus[slot] if self.slot_cpus else None}

  def _outcome(self, job: jobs_lib.Job, result: dict[str, Any]) -> jobs_lib.Outcome:
    log = os.path.join(job.workdir, jobs_lib.LOG_FILE)
    status = result['status']
    if status == 'failed':
      error = result.get('error') or f'exit status {result.get("returncode")}'
      tail = result.get('tail', '').strip()
      if tail:
        error += '; the log ends:\n      ' + tail.replace('\n', '\n      ')
      return jobs_lib.Outcome(job=job, status='failed', log=log, error=error,
                            seconds=result.get('seconds', 0.0))
    metrics_path = os.path.join(job.workdir, workdir_lib.METRICS_FILE)
    # None when the run's node does not share this filesystem (a sweep copies directories back).
    metrics = workdir_lib.read_json(metrics_path) if os.path.exists(metrics_path) else None
    return jobs_lib.Outcome(job=job, status=status, metrics=metrics, log=log,
                          seconds=result.get('seconds', 0.0))

  def _submit_all(self, jobs: Sequence[jobs_lib.Job], pending: list[int]
                  ) -> dict[int, jobs_lib.Outcome]:
    import ray

    task = ray.remote(ray_task.train_in_subprocess).options(
        num_cpus=1 if self.local else self.threads, num_gpus=self.options.gpus_per_run,
        max_retries=0)
    in_flight: dict[Any, tuple[int, int]] = {}
    try:
      return self._schedule(task, jobs, pending, in_flight)
    except KeyboardInterrupt:
      # Stop the runs in flight (each resumes from its last checkpoint next time).
      for ref in in_flight:
        ray.cancel(ref)
      ray.wait(list(in_flight), num_returns=len(in_flight), timeout=30)
      raise

  def _schedule(self, task, jobs: Sequence[jobs_lib.Job], pending: list[int],
                in_flight: dict[Any, tuple[int, int]]) -> dict[int, jobs_lib.Outcome]:
    """Keeps at most max_concurrent runs in flight, each on a free slot, until all are done."""
    import ray

    limit = self.max_concurrent or len(pending)
    free_slots = list(range(max(limit, 1)))
    queue, out = list(pending), {}
    while queue or in_flight:
      while queue and len(in_flight) < limit:
        i, slot = queue.pop(0), free_slots.pop(0)
        in_flight[task.remote(self._spec(jobs[i], slot))] = (i, slot)
        log = os.path.join(jobs[i].workdir, jobs_lib.LOG_FILE)
        self.echo(f'{jobs[i].name}: training (log {log})')
      # With a timeout: a blocking wait would not see Ctrl-C until some run finished.
      ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
      for ref in ready:
        i, slot = in_flight.pop(ref)
        free_slots.append(slot)
        try:
          result = ray.get(ref)
        except ray.exceptions.RayError as e:  # the task itself died (node lost, worker killed)
          result = {'status': 'failed', 'error': f'Ray task failed: {type(e).__name__}: {e}'}
        out[i] = self._outcome(jobs[i], result)
        o = out[i]
        self.echo(f'{o.job.name}: {o.status}' + (f' in {o.seconds:.1f} s' if o.seconds else ''))
    return out

  def run(self, jobs: Sequence[jobs_lib.Job]) -> list[jobs_lib.Outcome]:
    """Trains the jobs that are not complete, in parallel; raises RunsFailedError at the end."""
    t0 = time.time()
    outcomes: dict[int, jobs_lib.Outcome] = {}
    pending = []
    for i, job in enumerate(jobs):
      if jobs_lib.is_complete(job.workdir):
        outcomes[i] = jobs_lib.finished_outcome(job)
        self.echo(f'{job.name}: done')
      else:
        pending.append(i)
    # Every workdir guarded (and its config.json written) before anything starts: a conflict is
    # the user's to resolve, and no run should be half-way when it is found.
    for i in pending:
      workdir_lib.prepare_workdir(jobs[i].workdir, jobs[i].config)
    if pending:
      self._start()
      outcomes.update(self._submit_all(jobs, pending))
      self.echo(f'ray: {len(pending)} runs in {time.time() - t0:.1f} s')
    ordered = [outcomes[i] for i in range(len(jobs))]
    failed = [o for o in ordered if o.status == 'failed']
    if failed:
      raise jobs_lib.RunsFailedError(failed, len(jobs))
    return ordered
