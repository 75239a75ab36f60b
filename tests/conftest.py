"""Shared fixtures and helpers of the training tests: smoke configs, cached runs, restoring states.

Every end-to-end test compiles the same few programs (the smoke train / eval steps of each method
and architecture). JAX's persistent compilation cache, in a directory private to this test session,
lets the second and later runs of the same program (resume tests, reference runs, subprocesses)
skip XLA compilation; it changes no numbers, since the cached executable is the one compiled.

XLA's CPU backend is also asked for less LLVM optimisation (`--xla_backend_optimization_level=0`):
it halves compile time, which dominates these tiny runs, and every comparison the tests make is
between programs compiled the same way. Set HYPER_ENSEMBLES_TEST_FULL_OPT=1 to keep XLA's default.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'
# Both settings are idempotent: test modules import this file again as `tests.conftest`.
_FULL_OPT = os.environ.get('HYPER_ENSEMBLES_TEST_FULL_OPT') == '1'
if not _FULL_OPT and _FAST_COMPILE_FLAG not in os.environ.get('XLA_FLAGS', ''):
  # Before JAX initialises its backend (it reads XLA_FLAGS once, at that moment).
  os.environ['XLA_FLAGS'] = ' '.join(filter(None, [os.environ.get('XLA_FLAGS'),
                                                   _FAST_COMPILE_FLAG]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from configs import default as default_config  # noqa: E402

if 'HYPER_ENSEMBLES_TEST_JAX_CACHE' not in os.environ:
  os.environ['HYPER_ENSEMBLES_TEST_JAX_CACHE'] = tempfile.mkdtemp(
      prefix='hyper_ensembles_test_jax_cache_')
  atexit.register(shutil.rmtree, os.environ['HYPER_ENSEMBLES_TEST_JAX_CACHE'], ignore_errors=True)
_CACHE_DIR = os.environ['HYPER_ENSEMBLES_TEST_JAX_CACHE']
_CACHE_SETTINGS = {
    'jax_compilation_cache_dir': _CACHE_DIR,
    'jax_persistent_cache_min_compile_time_secs': 0.0,
    'jax_persistent_cache_min_entry_size_bytes': 0,
}
for _name, _value in _CACHE_SETTINGS.items():
  jax.config.update(_name, _value)


def subprocess_env(**extra: str) -> dict[str, str]:
  """Environment for a child Python running this repo on CPU, sharing the compilation cache.

  The parent's XLA_FLAGS are not inherited (a child never gets a fake device count by accident);
  `extra` may set them, and the fast-compile flag is added as in this process.
  """
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  if not _FULL_OPT:
    extra['XLA_FLAGS'] = ' '.join(filter(None, [extra.get('XLA_FLAGS'), _FAST_COMPILE_FLAG]))
  env.update({
      'PYTHONPATH': os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')])),
      'JAX_PLATFORMS': 'cpu',
      'TF_CPP_MIN_LOG_LEVEL': '2',
  })
  env.update({name.upper(): str(value) for name, value in _CACHE_SETTINGS.items()})
  env.update(extra)
  return env


def apply_overrides(config, overrides: dict):
  """Sets dotted keys (`'optimizer.learning_rate'`) of a locked config; unknown keys fail."""
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split('.')
    node = config
    for parent in parents:
      node = getattr(node, parent)
    setattr(node, leaf, value)
  return config


def smoke_config(method: str = 'deep', arch: str = 'mlp', dataset: str = 'digits',
                 smoke: bool = True, **overrides):
  """`configs/default.py:method=...,arch=...,dataset=...,smoke` plus overrides of existing keys.

  Overrides are keyword arguments with `__` for dots: `optimizer__learning_rate=1e30`.
  """
  arg = f'method={method},arch={arch},dataset={dataset}' + (',smoke' if smoke else '')
  config = default_config.get_config(arg)
  return apply_overrides(config, {k.replace('__', '.'): v for k, v in overrides.items()})


def cli_overrides(**overrides) -> list[str]:
  """The `--config.<key>=<value>` flags equal to `smoke_config`'s keyword overrides."""
  return [f'--config.{k.replace("__", ".")}={v}' for k, v in overrides.items()]


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
  """`smoke_run(method, arch)` → workdir of a finished default smoke run (run once per session)."""
  from hyper_ensembles import train

  runs: dict[tuple[str, str], str] = {}

  def run(method: str, arch: str) -> str:
    if (method, arch) not in runs:
      workdir = str(tmp_path_factory.mktemp(f'smoke_{method}_{arch}'))
      train.train_and_evaluate(smoke_config(method, arch), workdir)
      runs[method, arch] = workdir
    return runs[method, arch]

  return run


def restore_state(config, workdir: str):
  """The train state of the latest checkpoint in `workdir`, restored as train.py restores it."""
  from hyper_ensembles.training import setup

  return setup.restore_latest(setup.build_run(config), workdir)


def assert_states_equal(a, b, skip=('train_seconds',)) -> None:
  """Every leaf of two train states is bitwise equal (wall-clock fields skipped)."""
  for field in ('step', 'params', 'model_state', 'opt_state', 'hparams', 'tuner', 'rng',
                'train_seconds'):
    if field in skip:
      continue
    leaves_a = jax.tree_util.tree_leaves_with_path(getattr(a, field))
    leaves_b = jax.tree_util.tree_leaves_with_path(getattr(b, field))
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b], field
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
      x, y = np.asarray(jax.device_get(x)), np.asarray(jax.device_get(y))
      assert x.dtype == y.dtype and x.shape == y.shape, (field, path)
      assert np.array_equal(x, y), (
          f'{field}{jax.tree_util.keystr(path)} differs: max |Δ| '
          f'{np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))}')


def checkpoint_params(run_dir: str):
  """Parameters of a run's latest checkpoint as numpy, read without a template."""
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(os.path.join(run_dir, 'checkpoints'))
  step = manager.latest_step()
  manager.close()
  state = ocp.StandardCheckpointer().restore(
      os.path.join(run_dir, 'checkpoints', str(step), 'default'))
  return jax.tree.map(np.asarray, state['params'])


def stage_actions(entries) -> dict:
  """`{stage: action}` of hyper-deep stage-log entries."""
  return {e['stage']: e['action'] for e in entries}


def checkpoint_steps(directory) -> list[int]:
  """Finished checkpoint steps in an orbax directory (temporary dirs are not digits)."""
  try:
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())
  except FileNotFoundError:
    return []


def signal_after_first_checkpoint(workdir, overrides: dict, signum: int, *,
                                  timeout: float = 240) -> tuple[int, str, int | None]:
  """Trains a smoke deep MLP in a subprocess and sends it `signum` once a checkpoint exists.

  Returns (exit status, stderr, the newest checkpoint step seen when the signal was sent, or None
  when the run ended before one appeared).
  """
  import subprocess
  import time
  command = [sys.executable, '-m', 'hyper_ensembles.main',
             '--config=configs/default.py:method=deep,arch=mlp,smoke',
             *cli_overrides(**overrides), f'--workdir={workdir}']
  process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  seen = None
  try:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
      steps = checkpoint_steps(os.path.join(workdir, 'checkpoints'))
      if steps:
        process.send_signal(signum)
        seen = steps[-1]
        break
      time.sleep(0.01)
    _, stderr = process.communicate(timeout=120)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  return process.returncode, stderr, seen


def assert_resumes_like_uninterrupted(config, workdir: str, reference: str) -> None:
  """Resumes `workdir` to the end; its final state equals a run never interrupted."""
  from hyper_ensembles import train
  train.train_and_evaluate(config, workdir)
  train.train_and_evaluate(config, reference)
  final = restore_state(config, workdir)
  assert int(final.step) == config.num_train_steps
  assert_states_equal(final, restore_state(config, reference))
