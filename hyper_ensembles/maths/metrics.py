"""Host-side evaluation metrics over full prediction sets (docs/design.md §2 and §9).

This module owns every number that ends up in `metrics.json`: ensemble NLL, accuracy, ECE (and the
reliability-diagram bins it is computed from) and Brier score of the ensemble predictive p̄; Gibbs
(weighted mean over members) NLL and accuracy; per-member NLL and accuracy; diversity (pairwise
disagreement and KL); and the OOD-detection metrics (AUROC, AUPR, FPR at 95 % TPR) together with
the scores they are computed from; and `mean_and_se`, how every results table summarises a metric
over seeds.

Everything is NumPy in float64: it runs once per evaluation on logits gathered to the host (or
re-loaded from `predictions/*.npz`), where precision matters more than speed. The ensemble
predictive itself is predictive.py's (probabilities are averaged, never logits), which computes
NumPy input in NumPy, so nothing here depends on device precision or tracing.

Inputs are member logits `[M, N, C]` (any float dtype), integer labels `[N]` and optional
non-negative member weights `[M]` (normalised here; duplicates from greedy selection act as
weights, and a zero weight is the same as leaving the member out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hyper_ensembles.maths import predictive

# --------------------------------------------------------------------------------------------------
# Input handling and probabilities.
# --------------------------------------------------------------------------------------------------


def _as_logits(logits: Any) -> np.ndarray:
  logits = np.asarray(logits, dtype=np.float64)
  if logits.ndim != 3:
    raise ValueError(f'logits must be [M, N, C], got shape {logits.shape}')
  if not np.all(np.isfinite(logits)):
    raise ValueError('logits contain NaN or infinite values')
  return logits


def _as_labels(labels: Any, num_examples: int, num_classes: int) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (num_examples,):
    raise ValueError(f'labels must have shape [N={num_examples}], got {labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integers, got dtype {labels.dtype}')
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]')
  return labels.astype(np.int64)


def _checked_weights(weights: Any, num_members: int) -> np.ndarray:
  """Member weights `[M]` in float64, checked but not normalised (all ones when None)."""
  if weights is None:
    return np.ones((num_members,))
  weights = np.asarray(weights, dtype=np.float64)
  if weights.shape != (num_members,):
    raise ValueError(f'weights must have shape [M={num_members}], got {weights.shape}')
  if not np.all(np.isfinite(weights)) or np.any(weights < 0):
    raise ValueError(f'weights must be finite and non-negative, got {weights}')
  if weights.sum() <= 0:
    raise ValueError('at least one member weight must be positive')
  return weights


def _normalised_weights(weights: Any, num_members: int) -> np.ndarray:
  """Member weights `[M]` summing to one (uniform when `weights` is None)."""
  weights = _checked_weights(weights, num_members)
  return weights / weights.sum()


def ensemble_log_probs(logits: Any, weights: Any = None) -> np.ndarray:
  """log p̄ `[N, C]` in float64, p̄ = Σ_k w_k softmax(z_k) with w = weights / Σ weights.

  predictive.ensemble_log_probs on float64 host arrays, after the checks that the traceable
  version cannot make (finite logits, non-negative weights with a positive sum).

  Args:
    logits: member logits `[M, N, C]`.
    weights: optional non-negative member weights `[M]`; default uniform.
  """
  logits = _as_logits(logits)
  return predictive.ensemble_log_probs(logits, _checked_weights(weights, logits.shape[0]))


def ensemble_probs(logits: Any, weights: Any = None) -> np.ndarray:
  """Ensemble predictive p̄ `[N, C]` in float64: the weighted mean of member softmaxes.

  Args:
    logits: member logits `[M, N, C]`.
    weights: optional non-negative member weights `[M]`; default uniform.
  """
  return np.exp(ensemble_log_probs(logits, weights))


# --------------------------------------------------------------------------------------------------
# Single-predictive metrics.
# --------------------------------------------------------------------------------------------------


def nll(log_probs: Any, labels: Any) -> float:
  """Negative log-likelihood −mean_n log p(y_n | x_n).

  Takes *log*-probabilities (e.g. from `ensemble_log_probs`), not probabilities, so that a tiny
  probability keeps its exact log instead of being clipped. Passing probabilities by mistake is
  caught: every probability vector has an entry ≥ 1/C > 0, whereas log-probabilities are ≤ 0.

  Args:
    log_probs: `[N, C]` log-probabilities.
    labels: `[N]` integer labels.
  """
  log_probs = np.asarray(log_probs, dtype=np.float64)
  if log_probs.ndim != 2:
    raise ValueError(f'log_probs must be [N, C], got shape {log_probs.shape}')
  if np.max(log_probs) > 1e-6:
    raise ValueError('nll expects log-probabilities (all <= 0); got positive values')
  labels = _as_labels(labels, *log_probs.shape)
  return float(-np.mean(log_probs[np.arange(labels.shape[0]), labels]))


def accuracy(probs: Any, labels: Any) -> float:
  """Fraction of rows whose argmax equals the label (ties go to the lowest class index).

  Args:
    probs: `[N, C]` probabilities; log-probabilities or logits give the same result.
    labels: `[N]` integer labels.
  """
  probs = np.asarray(probs)
  if probs.ndim != 2:
    raise ValueError(f'probs must be [N, C], got shape {probs.shape}')
  labels = _as_labels(labels, *probs.shape)
  return float(np.mean(np.argmax(probs, axis=-1) == labels))


def calibration_bin_indices(confidences: Any, num_bins: int = 15) -> np.ndarray:
  """Index of the equal-width confidence bin of each confidence in [0, 1].

  Convention: bin b covers (b/B, (b+1)/B] — right-closed — except the first, which is [0, 1/B].
  So a confidence exactly on an edge b/B (edges computed as `b / num_bins` in float64) belongs to
  the bin whose *upper* edge it is, and a confidence of exactly 1.0 falls in the last bin.

  Args:
    confidences: `[N]` values in [0, 1].
    num_bins: B, the number of bins.

  Returns:
    int64 `[N]` bin indices in [0, B).
  """
  confidences = np.asarray(confidences, dtype=np.float64)
  edges = np.arange(num_bins + 1, dtype=np.float64) / num_bins
  # side='left' returns the index of the first edge >= c, i.e. c ∈ (edges[i-1], edges[i]] → bin i-1.
  idx = np.searchsorted(edges, confidences, side='left') - 1
  return np.clip(idx, 0, num_bins - 1)


def _confidence_bins(probs: Any, labels: Any, num_bins: int):
  """The binning ECE and the reliability diagram share: per-bin sums over top-1 predictions.

  Returns (probs as float64, count `[B]`, Σ correct `[B]`, Σ confidence `[B]`), with the bins of
  `calibration_bin_indices`.
  """
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim != 2:
    raise ValueError(f'probs must be [N, C], got shape {probs.shape}')
  if num_bins < 1:
    raise ValueError(f'num_bins must be >= 1, got {num_bins}')
  labels = _as_labels(labels, *probs.shape)
  confidences = np.max(probs, axis=-1)
  correct = (np.argmax(probs, axis=-1) == labels).astype(np.float64)
  bins = calibration_bin_indices(confidences, num_bins)
  count = np.bincount(bins, minlength=num_bins)
  sum_correct = np.bincount(bins, weights=correct, minlength=num_bins)
  sum_conf = np.bincount(bins, weights=confidences, minlength=num_bins)
  return probs, count, sum_correct, sum_conf


def expected_calibration_error(probs: Any, labels: Any, num_bins: int = 15) -> float:
  """Expected calibration error Σ_b (n_b / N) |acc_b − conf_b| over top-1 confidence.

  Equal-width bins over [0, 1] with the edge convention of `calibration_bin_indices` (right-closed
  bins; 1.0 in the last bin). acc_b is the accuracy and conf_b the mean top-1 confidence of the
  n_b rows in bin b; empty bins contribute nothing.

  Args:
    probs: `[N, C]` probabilities (e.g. `ensemble_probs`).
    labels: `[N]` integer labels.
    num_bins: number of bins (15 as in docs/design.md §2).
  """
  probs, _, sum_correct, sum_conf = _confidence_bins(probs, labels, num_bins)
  # |acc_b − conf_b| · n_b / N = |Σ correct − Σ conf| / N, which also needs no division by n_b.
  return float(np.sum(np.abs(sum_correct - sum_conf)) / probs.shape[0])


def reliability_bins(probs: Any, labels: Any, num_bins: int = 15) -> dict[str, Any]:
  """Per-bin counts, accuracy and mean top-1 confidence: the data of a reliability diagram.

  The bins are exactly those of `expected_calibration_error`, and `ece` is its value, so the
  diagram and metrics.json agree.

  Args:
    probs: `[N, C]` probabilities (e.g. `ensemble_probs`).
    labels: `[N]` integer labels.
    num_bins: number of bins.

  Returns:
    `edges` `[B + 1]`, `count` `[B]` (int), `accuracy` and `confidence` `[B]` (NaN for an empty
    bin), and `ece` (a float).
  """
  probs, count, sum_correct, sum_conf = _confidence_bins(probs, labels, num_bins)
  with np.errstate(invalid='ignore', divide='ignore'):
    accuracy = sum_correct / count
    confidence = sum_conf / count
  return {
      'edges': np.arange(num_bins + 1, dtype=np.float64) / num_bins,
      'count': count,
      'accuracy': accuracy,
      'confidence': confidence,
      'ece': float(np.sum(np.abs(sum_correct - sum_conf)) / probs.shape[0]),
  }


def brier_score(probs: Any, labels: Any) -> float:
  """Brier score mean_n Σ_c (p_nc − 1[y_n = c])² (range [0, 2]; lower is better).

  Args:
    probs: `[N, C]` probabilities.
    labels: `[N]` integer labels.
  """
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim != 2:
    raise ValueError(f'probs must be [N, C], got shape {probs.shape}')
  labels = _as_labels(labels, *probs.shape)
  one_hot = np.eye(probs.shape[1], dtype=np.float64)[labels]
  return float(np.mean(np.sum((probs - one_hot) ** 2, axis=-1)))


# --------------------------------------------------------------------------------------------------
# Diversity.
# --------------------------------------------------------------------------------------------------


def pairwise_disagreement(logits: Any) -> float:
  """Fraction of inputs on which two members' argmax differ, averaged over pairs k < l.

  Unweighted: each distinct pair of members counts once. 0.0 when M = 1.

  Args:
    logits: member logits `[M, N, C]`.
  """
  logits = _as_logits(logits)
  num_members = logits.shape[0]
  if num_members < 2:
    return 0.0
  preds = np.argmax(logits, axis=-1)  # Argmax of logits == argmax of softmax.
  total = 0.0
  # A loop over k rather than an [M, M, N] comparison: pool evaluation can have M ~ 100.
  for k in range(num_members - 1):
    total += np.sum(np.mean(preds[k + 1:] != preds[k], axis=-1))
  return float(total / (num_members * (num_members - 1) / 2))


def average_pairwise_kl(logits: Any) -> float:
  """Mean over ordered pairs k ≠ l of mean_n KL(p_k(·|x_n) || p_l(·|x_n)).

  Symmetric by construction (both directions of every pair are included), which equals the mean
  over unordered pairs of the symmetrised KL (KL(p_k||p_l) + KL(p_l||p_k)) / 2. Natural log.
  0.0 when M = 1.

  Args:
    logits: member logits `[M, N, C]`.
  """
  logits = _as_logits(logits)
  num_members = logits.shape[0]
  if num_members < 2:
    return 0.0
  log_p = predictive.member_log_probs(logits)
  p = np.exp(log_p)
  total = 0.0
  for k in range(num_members):
    # KL(p_k || p_l) = Σ_c p_k (log p_k − log p_l); log-probs are finite, so an underflowed p_k = 0
    # gives 0, never 0 · inf. Summing over all l includes l = k, whose KL is exactly 0.
    kl = np.sum(p[k] * (log_p[k] - log_p), axis=-1)  # [M, N]
    total += np.sum(np.mean(kl, axis=-1))
  return float(total / (num_members * (num_members - 1)))


# --------------------------------------------------------------------------------------------------
# Everything in metrics.json for one eval set.
# --------------------------------------------------------------------------------------------------


def compute_metrics(logits: Any, labels: Any, weights: Any = None) -> dict[str, Any]:
  """All per-eval-set metrics of docs/design.md §9 as plain Python floats / lists (JSON-ready).

  - `nll`, `accuracy`, `ece` (15 bins), `brier`: of the ensemble predictive p̄ under `weights`.
  - `gibbs_nll`, `gibbs_accuracy`: weighted mean over members of member NLL / accuracy (same
    weights; the expected score of a member drawn with probability w_k).
  - `disagreement`, `avg_kl`: `pairwise_disagreement` / `average_pairwise_kl` over the distinct
    members with non-zero weight (duplicates are not counted as extra members, and a zero-weight
    member is not part of the ensemble); 0.0 if only one such member.
  - `member_nll`, `member_accuracy`: lists of M floats, one per member, in input order (zero-weight
    members included).

  Args:
    logits: member logits `[M, N, C]`, any float dtype.
    labels: `[N]` integer labels in [0, C).
    weights: optional non-negative member weights `[M]`; normalised; default uniform.
  """
  logits = _as_logits(logits)
  num_members, num_examples, num_classes = logits.shape
  labels = _as_labels(labels, num_examples, num_classes)
  w = _normalised_weights(weights, num_members)

  log_p_bar = ensemble_log_probs(logits, w)
  p_bar = np.exp(log_p_bar)
  member_log_p = predictive.member_log_probs(logits)
  member_nll = [nll(member_log_p[k], labels) for k in range(num_members)]
  member_accuracy = [accuracy(logits[k], labels) for k in range(num_members)]
  active = logits[w > 0]
  return {
      'nll': nll(log_p_bar, labels),
      'accuracy': accuracy(p_bar, labels),
      'ece': expected_calibration_error(p_bar, labels),
      'brier': brier_score(p_bar, labels),
      'gibbs_nll': float(np.dot(w, member_nll)),
      'gibbs_accuracy': float(np.dot(w, member_accuracy)),
      'disagreement': pairwise_disagreement(active),
      'avg_kl': average_pairwise_kl(active),
      'member_nll': [float(x) for x in member_nll],
      'member_accuracy': [float(x) for x in member_accuracy],
  }


# --------------------------------------------------------------------------------------------------
# Out-of-distribution detection.
# --------------------------------------------------------------------------------------------------


def ood_scores(logits: Any, weights: Any = None) -> dict[str, np.ndarray]:
  """Per-input OOD scores `[N]` from the ensemble predictive; higher = more in-distribution.

  - `max_prob`: max_c p̄_c.
  - `neg_entropy`: Σ_c p̄_c log p̄_c, the negative predictive entropy (log computed via logsumexp,
    so an underflowed p̄_c = 0 contributes 0).

  Args:
    logits: member logits `[M, N, C]`.
    weights: optional non-negative member weights `[M]`; default uniform.
  """
  log_p_bar = ensemble_log_probs(logits, weights)
  p_bar = np.exp(log_p_bar)
  return {
      'max_prob': np.max(p_bar, axis=-1),
      'neg_entropy': np.sum(p_bar * log_p_bar, axis=-1),
  }


def _roc_points(in_scores: np.ndarray, out_scores: np.ndarray):
  """True/false-positive counts at every distinct threshold, highest threshold first.

  Point i predicts "in-distribution" for every score >= the i-th largest distinct score.
  """
  scores = np.concatenate([in_scores, out_scores])
  is_in = np.concatenate([np.ones(in_scores.shape[0]), np.zeros(out_scores.shape[0])])
  order = np.argsort(-scores, kind='stable')
  scores, is_in = scores[order], is_in[order]
  # Tied scores must enter together, so keep only the last position of each run of equal scores.
  last_of_run = np.r_[np.diff(scores) != 0, True]
  tps = np.cumsum(is_in)[last_of_run]
  fps = np.cumsum(1.0 - is_in)[last_of_run]
  return tps, fps


def ood_metrics(in_scores: Any, out_scores: Any) -> dict[str, float]:
  """OOD-detection metrics with in-distribution as the POSITIVE class.

  Scores must follow the convention higher = more in-distribution (as returned by `ood_scores`);
  an input is predicted in-distribution when its score is >= a threshold.

  - `auroc`: area under the ROC curve (trapezoidal over all distinct thresholds, so ties count
    one half, i.e. P(s_in > s_out) + ½ P(s_in = s_out)).
  - `aupr`: average precision with in-distribution positive, Σ_i (R_i − R_{i−1}) P_i over
    distinct thresholds (the step-wise, non-interpolated definition).
  - `fpr_at_95_tpr`: false-positive rate (fraction of OOD inputs scored >= t) at the highest
    threshold t whose true-positive rate reaches at least 0.95.

  Args:
    in_scores: `[N_in]` scores of in-distribution inputs.
    out_scores: `[N_out]` scores of OOD inputs.
  """
  in_scores = np.asarray(in_scores, dtype=np.float64).reshape(-1)
  out_scores = np.asarray(out_scores, dtype=np.float64).reshape(-1)
  if in_scores.size == 0 or out_scores.size == 0:
    raise ValueError('both in_scores and out_scores must be non-empty')
  if not (np.all(np.isfinite(in_scores)) and np.all(np.isfinite(out_scores))):
    raise ValueError('OOD scores contain NaN or infinite values')
  tps, fps = _roc_points(in_scores, out_scores)
  tpr = tps / in_scores.size
  fpr = fps / out_scores.size
  precision = tps / (tps + fps)
  tpr0 = np.r_[0.0, tpr]
  fpr0 = np.r_[0.0, fpr]
  auroc = np.sum(np.diff(fpr0) * (tpr0[1:] + tpr0[:-1]) / 2)
  aupr = np.sum(np.diff(tpr0) * precision)
  # The last point has TPR = 1, so some threshold always qualifies; tpr is non-decreasing, so the
  # first qualifying point is the highest threshold and gives the smallest FPR among them. The
  # tolerance guards against 0.95 · N_in landing exactly on an integer but tps/N_in rounding down.
  fpr_at_95 = fpr[np.argmax(tpr >= 0.95 - 1e-12)]
  return {'auroc': float(auroc), 'aupr': float(aupr), 'fpr_at_95_tpr': float(fpr_at_95)}


# --------------------------------------------------------------------------------------------------
# Over seeds.
# --------------------------------------------------------------------------------------------------


def mean_and_se(values: list[float | None]) -> tuple[float, float | None, int]:
  """(mean, standard error of the mean = sample std (ddof 1) / √n or None for n = 1, n).

  None entries (a metric a run does not have) are skipped; no values give (nan, None, 0).
  """
  values = np.asarray([v for v in values if v is not None], dtype=np.float64)
  if values.size == 0:
    return float('nan'), None, 0
  se = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else None
  return float(np.mean(values)), se, int(values.size)
