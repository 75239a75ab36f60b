"""What a run writes into its workdir, and the guard against mixing two configs in one workdir.

Layout: `config.json` (resolved config), `checkpoints/` (orbax), TensorBoard event files,
`metrics.json` (final numbers, docs/design.md §9), `predictions/<eval set>.npz` (member logits
`[M, N, C]` float32 and labels `[N]`). Files are written atomically (temp file + rename) and only
by process 0: callers say whether they are it (`jax.process_index() == 0` in a multi-host run), so
that this module, and the launchers that read a run's files, need no JAX.
"""

from __future__ import annotations

import json
import os
import tempfile

import ml_collections
import numpy as np

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.json'
PREDICTIONS_DIR = 'predictions'


class WorkdirConflictError(ValueError):
  """The workdir holds a run made with a different config."""


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
  if is_writer:
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))
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


def write_json(path: str, obj) -> None:
  """Writes JSON atomically, so a crash never leaves a half-written file behind."""
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp')
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
  fd, tmp = tempfile.mkstemp(dir=directory, suffix='.npz')
  with os.fdopen(fd, 'wb') as f:
    np.savez(f, logits=logits.astype(np.float32), labels=labels.astype(np.int64))
  os.replace(tmp, path)
  return path


def read_predictions(workdir: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  with np.load(os.path.join(workdir, PREDICTIONS_DIR, f'{name}.npz')) as data:
    return data['logits'], data['labels']
