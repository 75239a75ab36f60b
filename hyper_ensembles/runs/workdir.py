"""What a run writes into its workdir, and the guard against mixing two configs in one workdir.

Layout: `config.json` (resolved config), `checkpoints/` (orbax), TensorBoard event files,
`metrics.json` (final numbers, docs/design.md §9), `predictions/<eval set>.npz` (member logits
`[M, N, C]` float32 and labels `[N]`). Files are written atomically (temp file + rename) and only
by process 0: callers say whether they are it (`jax.process_index() == 0` in a multi-host run), so
that this module, and the launchers that read a run's files, need no JAX. Files get
the permissions of the process umask (as the checkpoints do).

Also the one definition of a finished run (`is_finished`): training wrote metrics.json after its
final evaluation, recording the number of steps it trained (`FINISHED_KEY`). Nothing else writes
that key without checking that the latest checkpoint is at the final step (`evaluate`), so the
launchers, sweeps and the hyper-deep pipeline skip exactly the runs whose training finished.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile

import ml_collections
import numpy as np

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.json'
PREDICTIONS_DIR = 'predictions'
# metrics.json key that only the training loop writes, after its final evaluation: the number of
# steps trained. Its presence is what makes a run finished (`is_finished`).
FINISHED_KEY = 'trained_steps'


class WorkdirConflictError(ValueError):
  """The workdir holds a run made with a different config."""


class WorkdirError(ValueError):
  """The workdir cannot be used: a file stands there, or its filesystem refuses writes."""


def is_finished(run_dir: str) -> bool:
  """A run whose training finished: its metrics.json records the steps trained (FINISHED_KEY).

  The one definition used by train.py (nothing to do), the launchers (skip the run), evaluate.py
  and the hyper-deep pipeline. A metrics.json without the key (a run from before the key existed,
  or one an old `evaluate` wrote for an unfinished run) is not finished: training resumes from the
  checkpoint, which for a finished run is only the final evaluation again.
  """
  path = os.path.join(run_dir, METRICS_FILE)
  if not os.path.isfile(path):
    return False
  try:
    metrics = read_json(path)
  except (OSError, ValueError):
    return False
  return isinstance(metrics, dict) and FINISHED_KEY in metrics


def check_usable(workdir: str) -> None:
  """Raises WorkdirError, without writing anything, when `workdir` cannot hold a run.

  A file where the directory should be, a parent that is a file, a read-only filesystem, no
  permission to create or write the directory: each named with the path.
  """
  path = os.path.abspath(workdir)
  probe = path
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    where = 'the workdir' if probe == path else f'a parent of the workdir ({probe})'
    raise WorkdirError(f'--workdir {workdir}: {where} is a file, not a directory; choose another '
                       '--workdir or move the file away')
  try:
    read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
  except OSError:
    read_only = False
  if read_only:
    raise WorkdirError(f'--workdir {workdir}: {probe} is on a read-only filesystem; choose a '
                       'writable --workdir')
  if not os.access(probe, os.W_OK | os.X_OK):
    raise WorkdirError(f'--workdir {workdir}: no permission to write in {probe}; choose another '
                       '--workdir or fix its permissions')


def _workdir_os_error(workdir: str, e: OSError) -> WorkdirError:
  reason = os.strerror(e.errno) if e.errno else str(e)
  hint = {errno.EROFS: 'choose a writable --workdir', errno.EACCES: 'fix its permissions',
          errno.ENOSPC: 'free some space'}.get(e.errno, 'choose another --workdir')
  return WorkdirError(f'--workdir {workdir}: cannot write {e.filename or workdir}: {reason}; '
                      f'{hint}')


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten_dict(d: dict, prefix: str = '') -> dict:
  """{'a': {'b': 1}} → {'a.b': 1}."""
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(flatten_dict(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Refuses a workdir made with another config; True when it already holds this config."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return False
  old, new = read_json(path), config_to_dict(config)
  if old != new:
    flat_old, flat_new = flatten_dict(old), flatten_dict(new)
    keys = sorted(k for k in set(flat_old) | set(flat_new) if flat_old.get(k) != flat_new.get(k))
    diffs = ', '.join(f'{k}: {flat_old.get(k)!r} → {flat_new.get(k)!r}' for k in keys[:6])
    raise WorkdirConflictError(
        f'Workdir {workdir} holds a run with a different config ({diffs}). To resume it, rerun '
        f'with the config saved in {path}; to start a new run, choose another --workdir.')
  return True


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, *,
                    is_writer: bool = True) -> bool:
  """`check_workdir`, then creates the workdir and records the config if it is new.

  `is_writer`: whether this process writes files (False on all but process 0 of a multi-host
  run; a launcher driving runs is a single process). Returns True when the workdir already held
  this config (a resume).
  """
  if check_workdir(workdir, config):
    return True
  check_usable(workdir)
  if is_writer:
    try:
      os.makedirs(workdir, exist_ok=True)
      write_json(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))
    except OSError as e:
      raise _workdir_os_error(workdir, e) from e
  return False


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The locked config a run recorded in `workdir/config.json` (`config_to_dict`'s inverse).

  JSON has no tuples; every sequence field of a config is a tuple, so lists become tuples again.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} not found: {workdir} is not a run directory (hyper_ensembles.main writes '
        f'{CONFIG_FILE}, checkpoints/, {METRICS_FILE} and {PREDICTIONS_DIR}/ there)')
  return load_config_file(path)


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """The locked config in a recorded config.json file, lists turned back into tuples."""

  def tuples(value):
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  return ml_collections.ConfigDict(tuples(read_json(path))).lock()


def saved_prediction_sets(workdir: str) -> list[str]:
  """Names of the evaluation sets with `predictions/<set>.npz` in `workdir`, sorted."""
  directory = os.path.join(workdir, PREDICTIONS_DIR)
  if not os.path.isdir(directory):
    return []
  return sorted(f[:-len('.npz')] for f in os.listdir(directory) if f.endswith('.npz'))


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _open_temporary(directory: str, suffix: str) -> tuple[int, str]:
  """mkstemp, then the mode a plain `open` would give (mkstemp makes it owner-only, 0600)."""
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
  os.fchmod(fd, 0o666 & ~_umask())
  return fd, tmp


def write_json(path: str, obj) -> None:
  """Writes JSON atomically, so a crash never leaves a half-written file behind."""
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp = _open_temporary(directory, '.tmp')
  with os.fdopen(fd, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def write_predictions(workdir: str, name: str, logits: np.ndarray, labels: np.ndarray) -> str:
  """Saves member logits `[M, N, C]` (float32) and labels `[N]` of one evaluation set."""
  directory = os.path.join(workdir, PREDICTIONS_DIR)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f'{name}.npz')
  fd, tmp = _open_temporary(directory, '.npz')
  with os.fdopen(fd, 'wb') as f:
    np.savez(f, logits=logits.astype(np.float32), labels=labels.astype(np.int64))
  os.replace(tmp, path)
  return path


def read_predictions(workdir: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  with np.load(os.path.join(workdir, PREDICTIONS_DIR, f'{name}.npz')) as data:
    return data['logits'], data['labels']
