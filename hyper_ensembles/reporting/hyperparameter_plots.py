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

import os
import re
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from hyper_ensembles.reporting import event_scalars

TAG = re.compile(r'^hyper/(?P<name>.+)/member_(?P<member>\d+)/(?P<stat>lower|upper|mean)$')
STATS = ('lower', 'upper', 'mean')


def read_trajectories(workdir: str) -> dict:
  """`{name: {member: {'step', 'lower', 'upper', 'mean'}}}` from the event files under workdir."""
  scalars = event_scalars.read_scalars(workdir, lambda tag: TAG.match(tag) is not None)
  if not scalars:
    raise ValueError(
        f'the event files under {workdir} hold no hyper/<name>/member_<k>/... scalars; is it a '
        'hyper_batch or stn run that reached its first log step?')
  points = {(m['name'], m['member'], m['stat']): by_step
            for m, by_step in ((TAG.match(tag), by_step) for tag, by_step in scalars.items())}
  out: dict = defaultdict(dict)
  for name, member in sorted({(n, m) for n, m, _ in points}):
    steps = sorted(set.intersection(*(set(points.get((name, member, s), {})) for s in STATS)))
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
