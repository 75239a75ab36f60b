"""The λ-distribution trajectories of a hyper-batch (or stn) run, read back and drawn.

`read_trajectories` reads the scalars the training loop writes at every log step
(`hyper/<name>/member_<k>/{lower,upper,mean}`, from `HyperBatchEnsemble.tuner_summaries`) out of the
workdir's TensorBoard event files; `plot` draws one panel per tuned hyperparameter, one colour per
member: the band is the member's support [a, b], the line its mean. The λ axis is logarithmic, like
the distributions.

The trajectory format (also as JSON) is `{name: {member: {"step": [...], "lower": [...], "upper":
[...], "mean": [...]}}}` with members as strings ("0", "1", ...).
"""

from __future__ import annotations

import glob
import os
import re
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

TAG = re.compile(r'^hyper/(?P<name>.+)/member_(?P<member>\d+)/(?P<stat>lower|upper|mean)$')
STATS = ('lower', 'upper', 'mean')


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


def read_trajectories(workdir: str) -> dict:
  """`{name: {member: {'step', 'lower', 'upper', 'mean'}}}` from the event files under workdir.

  Later events for the same (tag, step) win, so a resumed run that rewrote a step is read once.
  """
  from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
  paths = sorted(glob.glob(os.path.join(workdir, '**', 'events.out.tfevents.*'), recursive=True))
  if not paths:
    raise FileNotFoundError(f'no TensorBoard event files under {workdir}')
  points: dict = defaultdict(dict)  # (name, member, stat) → {step: value}
  for path in paths:
    for event in LegacyEventFileLoader(path).Load():
      if not event.HasField('summary'):
        continue
      for value in event.summary.value:
        match = TAG.match(value.tag)
        scalar = _scalar(value) if match else None
        if scalar is not None:
          points[(match['name'], match['member'], match['stat'])][int(event.step)] = scalar
  if not points:
    raise ValueError(
        f'the event files under {workdir} hold no hyper/<name>/member_<k>/... scalars; is it a '
        'hyper_batch or stn run that reached its first log step?')
  out: dict = defaultdict(dict)
  for name, member in sorted({(n, m) for n, m, _ in points}):
    steps = sorted(set.intersection(*(set(points[(name, member, s)]) for s in STATS)))
    out[name][member] = {'step': steps, **{
        s: [points[(name, member, s)][t] for t in steps] for s in STATS}}
  return dict(out)


def plot(trajectories: dict, out: str, title: str | None = None) -> None:
  """One panel per hyperparameter; per member a band [lower, upper] and the mean as a line."""
  names = sorted(trajectories)
  fig = Figure(figsize=(5 * len(names), 3.8))
  axes = fig.subplots(1, len(names), squeeze=False)
  for ax, name in zip(axes[0], names):
    for member in sorted(trajectories[name], key=int):
      t = trajectories[name][member]
      step = np.asarray(t['step'])
      line, = ax.plot(step, t['mean'], label=f'member {member}')
      ax.fill_between(step, t['lower'], t['upper'], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_yscale('log')
    ax.set_title(name)
    ax.set_xlabel('train step')
    ax.set_ylabel('λ (band: support [a, b]; line: mean)')
    ax.grid(alpha=0.3, which='both')
  axes[0][0].legend(fontsize='small')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=120)
