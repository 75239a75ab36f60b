"""The training-length rule of the small-model protocols, and the validation curves it reads.

Rule (docs/table1.md, "The protocol, chosen on validation data"): for each measured curve of a
single network's **validation** NLL, take the centre of its lowest `WINDOW`-epoch window while the
learning rate is still at its initial value; e* is the earliest of those centres, and the training
length is L = `FACTOR`·e* rounded up to a multiple of `ROUND_TO` epochs. Long enough that a single
network has passed its validation minimum (the regime where tuning regularisation matters), and a
window rather than the raw minimum because one epoch's validation NLL is noisy. configs/table1.py
(Fashion-MNIST) and configs/default.py (the digits demo) state the lengths this gives on the curves
committed under docs/; tests recompute them.

Curves are read from a run's TensorBoard events (`validation/*` and `train/learning_rate` only:
test data never enter the rule) and stored as JSON: `{"_about": str, "runs": {name: {"arch",
"dataset", "epochs", "validation_nll", "validation_accuracy", "learning_rate"}}}`.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence

from hyper_ensembles.reporting import event_scalars

WINDOW = 5  # epochs averaged: a single epoch's validation NLL moves by more than the trend
FACTOR = 2  # L = 2·e*: well past the minimum, not only overfitting
ROUND_TO = 10  # epochs

VALIDATION_NLL = 'validation/nll'
VALIDATION_ACCURACY = 'validation/accuracy'
LEARNING_RATE = 'train/learning_rate'


@dataclasses.dataclass(frozen=True)
class Curve:
  """One single-network run, validated once per epoch."""

  arch: str
  dataset: str
  epochs: Sequence[float]
  validation_nll: Sequence[float]
  validation_accuracy: Sequence[float]
  learning_rate: Sequence[float]  # the schedule's rate at each validation


@dataclasses.dataclass(frozen=True)
class Length:
  epochs: int  # L
  e_star: float
  centres: dict[str, float]  # each curve's lowest-window centre


def window_centre(curve: Curve, window: int = WINDOW) -> float:
  """The epoch at the centre of the lowest `window`-point mean of validation NLL, over the
  validations before the learning rate first changed (the first of equal windows wins)."""
  if window < 1 or window % 2 == 0:
    raise ValueError(f'window must be a positive odd number of epochs, got {window}')
  lr0 = curve.learning_rate[0]
  constant = []
  for epoch, nll, lr in zip(curve.epochs, curve.validation_nll, curve.learning_rate):
    if lr != lr0:
      break
    constant.append((epoch, nll))
  if len(constant) < window:
    raise ValueError(f'{len(constant)} validations at the initial learning rate; the rule needs '
                     f'at least {window}')
  sums = [sum(nll for _, nll in constant[i:i + window]) for i in range(len(constant) - window + 1)]
  best = min(range(len(sums)), key=sums.__getitem__)
  return constant[best + window // 2][0]


def training_length(curves: dict[str, Curve]) -> Length:
  """L = FACTOR·e* rounded up to ROUND_TO epochs, e* the earliest lowest-window centre."""
  if not curves:
    raise ValueError('the training-length rule needs at least one validation curve')
  centres = {name: window_centre(curve) for name, curve in curves.items()}
  e_star = min(centres.values())
  return Length(epochs=math.ceil(FACTOR * e_star / ROUND_TO) * ROUND_TO, e_star=e_star,
                centres=centres)


def read_curve(workdir: str, steps_per_epoch: int, arch: str, dataset: str) -> Curve:
  """A run's curve from its event files: one point per validation step, the learning rate being
  the last one logged at or before it (the loop logs it every `log_every_steps`)."""
  scalars = event_scalars.read_scalars(
      workdir, lambda tag: tag in (VALIDATION_NLL, VALIDATION_ACCURACY, LEARNING_RATE))
  missing = [t for t in (VALIDATION_NLL, VALIDATION_ACCURACY, LEARNING_RATE) if t not in scalars]
  if missing:
    raise ValueError(f'the event files under {workdir} hold no {", ".join(missing)}; was it '
                     'trained with eval_every_steps > 0?')
  steps = sorted(scalars[VALIDATION_NLL])
  lr_steps = sorted(scalars[LEARNING_RATE])

  def lr_at(step: int) -> float:
    i = bisect.bisect_right(lr_steps, step) - 1  # the last log at or before step (else the first)
    return scalars[LEARNING_RATE][lr_steps[max(i, 0)]]

  return Curve(arch=arch, dataset=dataset, epochs=[s / steps_per_epoch for s in steps],
               validation_nll=[scalars[VALIDATION_NLL][s] for s in steps],
               validation_accuracy=[scalars[VALIDATION_ACCURACY][s] for s in steps],
               learning_rate=[lr_at(s) for s in steps])


def load_curves(path: str, *, arch: str | None = None, dataset: str | None = None
                ) -> dict[str, Curve]:
  """The curves stored at path, optionally only those of one arch and / or dataset."""
  with open(path) as f:
    runs = json.load(f)['runs']
  curves = {name: Curve(**run) for name, run in runs.items()}
  return {name: c for name, c in curves.items()
          if (arch is None or c.arch == arch) and (dataset is None or c.dataset == dataset)}


def save_curves(path: str, curves: dict[str, Curve], about: str) -> None:
  with open(path, 'w') as f:
    json.dump({'_about': about, 'runs': {n: dataclasses.asdict(c) for n, c in curves.items()}},
              f, indent=1)


def describe(curves: dict[str, Curve]) -> Iterable[str]:
  """Lines a person reads: each curve's centre and minimum, then e* and L."""
  length = training_length(curves)
  for name, curve in curves.items():
    i = min(range(len(curve.validation_nll)), key=curve.validation_nll.__getitem__)
    yield (f'{name}: lowest {WINDOW}-epoch window centred at epoch {length.centres[name]:g}; raw '
           f'minimum {curve.validation_nll[i]:.4f} at epoch {curve.epochs[i]:g}')
  yield (f'e* = {length.e_star:g} → L = {FACTOR}·e* rounded up to {ROUND_TO} = {length.epochs} '
         'epochs')
