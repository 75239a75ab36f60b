"""When a run has diverged: the rule the training loop applies to every step's loss.

A run has diverged at the first step whose training loss is non-finite or above

    bound = DIVERGENCE_FACTOR · log C        (C classes; DIVERGENCE_FACTOR = 1e6)

log C is the cross-entropy of a uniform prediction, the loss of a fresh network up to its weight
penalty; a million times that is out of reach of any run that is still learning (the largest
initial penalty of our configs, ν = 1e3 on digits, is a few hundred) yet far below what a
diverging one reaches (Adam at a learning rate of 1e6: 2.5e20 within a hundred steps). The rule
depends on the loss of each step alone, not on the run's history, so a resumed run stops at the
same step as an uninterrupted one.

The loop checks before every checkpoint and every log line, so the diverged state is never saved:
the checkpoints already written are kept and `DivergedError` (a FloatingPointError, reported as
one line by runs/cli.py) names the step, the loss, the bound and the last good checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

DIVERGENCE_FACTOR = 1e6


class DivergedError(FloatingPointError):
  """The training loss became non-finite or exceeded the divergence bound."""


def loss_bound(num_classes: int) -> float:
  return DIVERGENCE_FACTOR * math.log(max(int(num_classes), 2))


def check_losses(losses, first_step: int, bound: float, last_checkpoint: int | None,
                 directory: str) -> None:
  """Raises DivergedError at the first diverged loss; losses[i] is step first_step + i + 1's."""
  losses = np.asarray(losses, dtype=np.float64)
  bad = np.flatnonzero(~np.isfinite(losses) | (losses > bound))
  if not bad.size:
    return
  value = losses[bad[0]]
  why = ('non-finite' if not np.isfinite(value)
         else f'above the divergence bound {bound:.3g} (1e6·log C for C classes)')
  kept = (f'the last good checkpoint (step {last_checkpoint}) is kept in {directory}'
          if last_checkpoint is not None else f'no checkpoint was saved before it ({directory})')
  raise DivergedError(
      f'Training diverged: loss {value:.4g} at step {first_step + int(bad[0]) + 1} is {why}; '
      f'{kept}. Lower the learning rate or check the data.')
