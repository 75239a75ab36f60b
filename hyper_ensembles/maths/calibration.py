"""Post-hoc temperature scaling of ensembles and the reliability-diagram bins.

This module owns how temperatures are fitted and applied, and what `metrics.json` records about
them; evaluation.py calls it so that training runs and `python -m hyper_ensembles.evaluate` share
one path.

Temperature scaling divides member logits by T > 0 before the softmax. It never changes a member's
argmax; with one T for every member (the `ensemble` mode) the ensemble's argmax can still move,
since the members' probabilities are averaged after scaling. Modes (`config.evaluation.
temperature_scaling`):

  'ensemble'    one T for all members, minimising the ensemble NLL −mean log p̄ on validation
                (p̄ the weighted mean of the members' softmax(z_k / T), docs/design.md §2).
  'per_member'  member k gets its own T_k minimising its own validation NLL; the ensemble is then
                formed from the tempered members.
  ''            off.

Fitting is a 1-D problem in s = log T on [log 0.01, log 100]: a grid of `GRID_SIZE` points brackets
the best region (the ensemble NLL is not convex in s in general, a grid cannot be fooled by a
second basin), bounded Brent (scipy) refines inside the bracket, and T = 1 is kept unless a
temperature lowers the NLL by more than `MIN_IMPROVEMENT` — so data that is already calibrated,
or a degenerate flat NLL, gives exactly T = 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

from hyper_ensembles.maths import metrics as metrics_lib

MODES = ('ensemble', 'per_member')
DEFAULT_MODE = 'ensemble'
# Key suffix of every tempered evaluation set in metrics.json: `test` → `test_tempered`.
SUFFIX = '_tempered'
# metrics.json entry recording the fitted temperatures: {"mode": str, "values": [M floats]}.
RECORD_KEY = 'temperature'
FIT_SET = 'validation'
T_MIN, T_MAX = 1e-2, 1e2
GRID_SIZE = 41
MIN_IMPROVEMENT = 1e-9


def check_mode(mode: str | None) -> str:
  """The temperature-scaling mode, '' when off; a ValueError naming the choices otherwise."""
  mode = (mode or '').strip()
  if mode not in ('', *MODES):
    raise ValueError(f'Unknown temperature_scaling {mode!r}; choose one of: '
                     f"{', '.join(MODES)} or '' (off)")
  return mode


def config_mode(config) -> str:
  """`config.evaluation.temperature_scaling`, or the default for configs recorded before it."""
  evaluation = config.get('evaluation') or {}
  return check_mode(evaluation.get('temperature_scaling', DEFAULT_MODE))


def apply_temperatures(logits: Any, temperatures: Any) -> np.ndarray:
  """Member logits `[M, N, C]` divided by their temperatures `[M]` (float64)."""
  logits = np.asarray(logits, dtype=np.float64)
  temperatures = np.asarray(temperatures, dtype=np.float64).reshape(-1)
  if temperatures.shape != (logits.shape[0],) or np.any(temperatures <= 0):
    raise ValueError(f'need {logits.shape[0]} positive temperatures, got {temperatures}')
  return logits / temperatures[:, None, None]


def tempered_nll(logits: Any, labels: Any, temperature: float, weights: Any = None) -> float:
  """Ensemble NLL of member logits `[M, N, C]` all divided by one temperature."""
  log_p_bar = metrics_lib.ensemble_log_probs(np.asarray(logits, np.float64) / temperature,
                                             weights)
  return metrics_lib.nll(log_p_bar, labels)


def fit_temperature(logits: Any, labels: Any, weights: Any = None) -> float:
  """The T in [T_MIN, T_MAX] minimising `tempered_nll` (one T for all members; module docstring).

  Args:
    logits: member logits `[M, N, C]`.
    labels: `[N]` integer labels.
    weights: optional non-negative member weights `[M]`, as in metrics.compute_metrics.
  """
  logits = np.asarray(logits, dtype=np.float64)
  objective = lambda s: tempered_nll(logits, labels, float(np.exp(s)), weights)
  grid = np.linspace(np.log(T_MIN), np.log(T_MAX), GRID_SIZE)
  values = np.array([objective(s) for s in grid])
  best = int(np.argmin(values))
  lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, GRID_SIZE - 1)]
  refined = scipy.optimize.minimize_scalar(objective, bounds=(lo, hi), method='bounded',
                                           options={'xatol': 1e-6})
  candidates = [(values[best], grid[best])]
  if refined.success and np.isfinite(refined.fun):
    candidates.append((float(refined.fun), float(refined.x)))
  value, s = min(candidates)
  # Sanity: a temperature must earn its place against the untempered model.
  if not value < objective(0.0) - MIN_IMPROVEMENT:
    return 1.0
  return float(np.exp(s))


def fit_temperatures(logits: Any, labels: Any, mode: str, weights: Any = None) -> np.ndarray:
  """Temperatures `[M]`, one per member, fitted in `mode` ('ensemble': all equal)."""
  mode = check_mode(mode)
  if not mode:
    raise ValueError('fit_temperatures needs a mode; temperature scaling is off')
  logits = np.asarray(logits, dtype=np.float64)
  if mode == 'ensemble':
    return np.full((logits.shape[0],), fit_temperature(logits, labels, weights))
  return np.array([fit_temperature(logits[k:k + 1], labels) for k in range(logits.shape[0])])


def tempered_predictions(predictions: dict[str, tuple], temperatures: Any) -> dict[str, tuple]:
  """`{set: (logits / T, labels)}` for every set of `{set: (logits [M, N, C], labels)}`."""
  return {name: (apply_temperatures(logits, temperatures), labels)
          for name, (logits, labels) in predictions.items()}


def record(mode: str, temperatures: Any) -> dict[str, Any]:
  """The `temperature` entry of metrics.json: the mode, and one value per member."""
  return {'mode': mode, 'fitted_on': FIT_SET,
          'values': [float(t) for t in np.asarray(temperatures).reshape(-1)]}


def is_tempered_key(name: str) -> bool:
  return name.endswith(SUFFIX)


def tempered_key(name: str) -> str:
  return name + SUFFIX


def untempered_key(name: str) -> str:
  return name[:-len(SUFFIX)] if is_tempered_key(name) else name


# --------------------------------------------------------------------------------------------------
# Reliability diagrams.
# --------------------------------------------------------------------------------------------------


def reliability_bins(probs: Any, labels: Any, num_bins: int = 15) -> dict[str, np.ndarray]:
  """Per-bin counts, accuracy and mean top-1 confidence: the data of a reliability diagram.

  Bins are those of metrics.expected_calibration_error (equal width, right-closed), so
  Σ_b count_b / N · |accuracy_b − confidence_b| is exactly the ECE of metrics.json.

  Args:
    probs: `[N, C]` probabilities (e.g. metrics.ensemble_probs).
    labels: `[N]` integer labels.
    num_bins: number of bins.

  Returns:
    `edges` `[B + 1]`, `count` `[B]` (int), `accuracy` and `confidence` `[B]` (NaN for an empty
    bin), and `ece` (a float).
  """
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim != 2:
    raise ValueError(f'probs must be [N, C], got shape {probs.shape}')
  labels = np.asarray(labels)
  confidences = probs.max(axis=-1)
  correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
  bins = metrics_lib.calibration_bin_indices(confidences, num_bins)
  count = np.bincount(bins, minlength=num_bins)
  with np.errstate(invalid='ignore', divide='ignore'):
    accuracy = np.bincount(bins, weights=correct, minlength=num_bins) / count
    confidence = np.bincount(bins, weights=confidences, minlength=num_bins) / count
  gaps = np.where(count > 0, np.abs(accuracy - confidence), 0.0)
  return {
      'edges': np.arange(num_bins + 1, dtype=np.float64) / num_bins,
      'count': count,
      'accuracy': accuracy,
      'confidence': confidence,
      'ece': float(np.sum(count * gaps) / max(len(labels), 1)),
  }
