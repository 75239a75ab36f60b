"""Reading member logits back from the runs' saved `predictions/<set>.npz`, each file once.

Selection and evaluation read only these files, so runs trained anywhere count once their
directories are in DIR.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from hyper_ensembles.hyper_deep.plan import Member
from hyper_ensembles.runs import workdir as workdir_lib


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
