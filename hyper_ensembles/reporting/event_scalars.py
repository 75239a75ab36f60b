"""Scalars read back from a workdir's TensorBoard event files (what the training loop's clu writer
wrote): `{tag: {step: value}}` for the tags a caller selects.

Later events for the same (tag, step) win, so a resumed run that rewrote a step is read once. clu
writes scalars as scalar tensors; older writers used `simple_value`; both are read.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable


def _scalar(value) -> float | None:
  """The float in a summary value, whether written as simple_value or as a scalar tensor."""
  kind = value.WhichOneof('value')
  if kind == 'simple_value':
    return float(value.simple_value)
  if kind == 'tensor':
    from tensorboard.util import tensor_util
    array = tensor_util.make_ndarray(value.tensor)
    return float(array) if array.size == 1 else None
  return None


def read_scalars(workdir: str, wanted: Callable[[str], bool]) -> dict[str, dict[int, float]]:
  """`{tag: {step: value}}` for every scalar tag under workdir (recursively) that `wanted` accepts.

  Raises FileNotFoundError when workdir holds no event file.
  """
  from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
  paths = sorted(glob.glob(os.path.join(workdir, '**', 'events.out.tfevents.*'), recursive=True))
  if not paths:
    raise FileNotFoundError(f'no TensorBoard event files under {workdir}')
  out: dict[str, dict[int, float]] = {}
  for path in paths:
    for event in LegacyEventFileLoader(path).Load():
      if not event.HasField('summary'):
        continue
      for value in event.summary.value:
        if not wanted(value.tag):
          continue
        scalar = _scalar(value)
        if scalar is not None:
          out.setdefault(value.tag, {})[int(event.step)] = scalar
  return out
