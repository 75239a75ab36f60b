"""The Ray task that trains one run: a `python -m hyper_ensembles.main` subprocess, on any node.

No JAX (the standard library and runs/workdir.py), so a Ray worker importing it does not load it:
the run's own process does, with the thread limits and devices it was given. The run is started
from its own config.json (configs/saved.py), written here when the node does not see the driver's
copy, so the subprocess trains exactly the config the driver checked. Its stdout and stderr go to
the run's launch.log, appended to, never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Any

from hyper_ensembles.runs import workdir as workdir_lib

# hyper_ensembles/launching/ray_task.py → the repository root (three levels up).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TAIL_LINES = 15


def _is_complete(run_dir: str) -> bool:
  return (os.path.exists(os.path.join(run_dir, workdir_lib.METRICS_FILE))
          and os.path.exists(os.path.join(run_dir, workdir_lib.PREDICTIONS_DIR, 'validation.npz')))


def _environment(threads: int, pinned: bool, extra: dict[str, str]) -> dict[str, str]:
  """This worker's environment with the run's thread limits and the caller's extra variables."""
  env = dict(os.environ)
  env.update(extra)
  threads_str = str(threads)
  for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
               'TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'):
    env[name] = threads_str
  if threads == 1 and not pinned:
    # XLA:CPU sizes its thread pool from the CPU affinity, which a local Ray sets; elsewhere this
    # keeps Eigen's matmuls and convolutions single-threaded at least.
    env['XLA_FLAGS'] = ' '.join(filter(None, [env.get('XLA_FLAGS'),
                                              '--xla_cpu_multi_thread_eigen=false']))
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return env


def _tail(path: str) -> str:
  with open(path, errors='replace') as f:
    return ''.join(f.readlines()[-_TAIL_LINES:])


def train_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
  """Trains the run `spec` describes unless it is complete; returns what happened.

  spec: `workdir` (the run directory), `config` (its config.json contents), `log` (file to append
  to), `threads` (CPU threads), `env` (extra variables), `cpus` (CPU ids to pin to, or None).
  """
  run_dir, log = spec['workdir'], spec['log']
  host = socket.gethostname()
  if _is_complete(run_dir):
    return {'status': 'done', 'host': host}
  os.makedirs(run_dir, exist_ok=True)
  config_path = os.path.join(run_dir, workdir_lib.CONFIG_FILE)
  if not os.path.exists(config_path):
    workdir_lib.write_json(config_path, spec['config'])
  command = [sys.executable, '-m', 'hyper_ensembles.main',
             f'--config={os.path.join(REPO_ROOT, "configs", "saved.py")}:{config_path}',
             f'--workdir={run_dir}']
  t0 = time.time()
  with open(log, 'a') as f:
    f.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} on {host}: {" ".join(command)}\n')
    f.flush()
    proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                            env=_environment(spec['threads'], bool(spec.get('cpus')), spec['env']))
    if spec.get('cpus') and hasattr(os, 'sched_setaffinity'):
      # Before the child's Python has even imported JAX, so its thread pools fit the CPUs; an
      # OSError means it exited already, and its return code says why.
      with contextlib.suppress(OSError):
        os.sched_setaffinity(proc.pid, spec['cpus'])
    try:
      returncode = proc.wait()
    except BaseException:
      # Cancelled (ray.cancel raises KeyboardInterrupt here): stop the run too, which resumes from
      # its last checkpoint next time, rather than leave it running without a driver.
      proc.terminate()
      with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
      raise
  ok = returncode == 0 and _is_complete(run_dir)
  return {'status': 'trained' if ok else 'failed', 'returncode': returncode, 'host': host,
          'seconds': time.time() - t0, 'tail': '' if ok else _tail(log)}
