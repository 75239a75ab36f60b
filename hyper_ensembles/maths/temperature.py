"""Post-hoc temperature scaling of ensembles: fitting temperatures and applying them.

Temperature scaling divides member logits by T > 0 before the softmax. It never changes a member's
argmax; with one T for every member (the `ensemble` mode) the ensemble's argmax can still move,
since the members' probabilities are averaged after scaling. Modes:

  'ensemble'    one T for all members, minimising the ensemble NLL −mean log p̄ on the fitting set
                (p̄ the weighted mean of the members' softmax(z_k / T), docs/design.md §2).
  'per_member'  member k gets its own T_k minimising its own NLL; the ensemble is then formed from
                the tempered members.

Fitting is a 1-D problem in s = log T on [log 0.01, log 100]: a grid of `GRID_SIZE` points brackets
the best region (the ensemble NLL is not convex in s in general, a grid cannot be fooled by a
second basin), bounded Brent (scipy) refines inside the bracket, and T = 1 is kept unless a
temperature lowers the NLL by more than `MIN_IMPROVEMENT` — so data that is already calibrated,
or a degenerate flat NLL, gives exactly T = 1.

Which set temperatures are fitted on, the config option that turns them on and how tempered
results are recorded in metrics.json belong to the evaluation layer (evaluation/results.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

from hyper_ensembles.maths import metrics as metrics_lib

MODES = ('ensemble', 'per_member')
T_MIN, T_MAX = 1e-2, 1e2
GRID_SIZE = 41
MIN_IMPROVEMENT = 1e-9


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
  """Temperatures `[M]`, one per member, fitted in `mode` (one of MODES; 'ensemble': all equal)."""
  if mode not in MODES:
    raise ValueError(
        f'Unknown temperature-scaling mode {mode!r}; choose one of: {", ".join(MODES)}')
  logits = np.asarray(logits, dtype=np.float64)
  if mode == 'ensemble':
    return np.full((logits.shape[0],), fit_temperature(logits, labels, weights))
  return np.array([fit_temperature(logits[k:k + 1], labels) for k in range(logits.shape[0])])
