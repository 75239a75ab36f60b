"""Greedy ensemble selection with replacement (Caruana et al. 2004) on validation NLL.

This module owns step 2 of the hyper-deep ensemble pipeline (docs/design.md §5): given the saved
validation logits of a pool of trained models, pick a multiset of them whose averaged predictive
has the lowest validation NLL. It is a pure NumPy function over arrays: it never cares whether the
pool was trained as one vectorised program or as separate runs.

The ensemble NLL is computed in float64 on the host, from predictive.py's member log-softmax
(docs/design.md §2, never averaging logits), kept as a running log-sum over the picks so that each
round scores every candidate at once; the NLL of any weighted ensemble is
predictive.ensemble_nll. Selection runs on saved predictions alone and never touches a device.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hyper_ensembles.maths import predictive

# Default cap on picks per distinct member allowed, so that `max_rounds=None` always terminates
# even in pathological pools where re-picks keep shaving off tiny amounts of NLL.
DEFAULT_ROUNDS_PER_MEMBER = 10

# An addition counts as an improvement only if it lowers the NLL by more than float64 round-off.
# Without this, re-picking a model identical to the ensemble (log-add-exp of equal terms minus
# log 2) can "improve" the NLL by one ulp and turn a no-op into an extra pick.
_ROUNDOFF_RTOL = 1e-12


@dataclasses.dataclass(frozen=True)
class SelectionResult:
  """The outcome of greedy selection.

  Attributes:
    members: distinct pool indices chosen, in order of first pick.
    counts: multiplicity of each member (aligned with `members`); duplicates act as weights.
    picks: the raw sequence of picks, one pool index per round.
    nll_history: the ensemble validation NLL after each pick (aligned with `picks`).
  """

  members: tuple[int, ...]
  counts: tuple[int, ...]
  picks: tuple[int, ...]
  nll_history: tuple[float, ...]

  def __post_init__(self):
    if len(self.members) != len(self.counts):
      raise ValueError(
          f'members and counts must align, got {len(self.members)} and {len(self.counts)}')
    if len(self.picks) != len(self.nll_history):
      raise ValueError(
          f'picks and nll_history must align, got {len(self.picks)} and '
          f'{len(self.nll_history)}')
    if sum(self.counts) != len(self.picks):
      raise ValueError(f'counts sum to {sum(self.counts)} but there are {len(self.picks)} picks')

  @property
  def weights(self) -> np.ndarray:
    """Averaging weights `counts / sum(counts)`, float64 `[len(members)]`, aligned with members."""
    counts = np.asarray(self.counts, dtype=np.float64)
    return counts / counts.sum()

  @property
  def nll(self) -> float:
    """The final ensemble validation NLL (that of the last pick)."""
    return self.nll_history[-1]

  def to_json(self) -> dict[str, Any]:
    """A plain JSON-serialisable dict (Python ints, floats and lists only)."""
    return {
        'members': [int(m) for m in self.members],
        'counts': [int(c) for c in self.counts],
        'weights': [float(w) for w in self.weights],
        'picks': [int(p) for p in self.picks],
        'nll_history': [float(v) for v in self.nll_history],
    }

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> SelectionResult:
    """Inverse of `to_json` (the derived `weights` entry is ignored)."""
    return cls(
        members=tuple(int(m) for m in d['members']),
        counts=tuple(int(c) for c in d['counts']),
        picks=tuple(int(p) for p in d['picks']),
        nll_history=tuple(float(v) for v in d['nll_history']),
    )


def _as_float64_logits(logits: Any, name: str) -> np.ndarray:
  """Converts `[P, N, C]` logits of any real dtype (bf16 included) to float64 and checks them."""
  arr = np.asarray(logits)
  if arr.dtype.kind in 'bcOSUM':
    raise TypeError(f'{name} must be a real floating array, got dtype {arr.dtype}')
  arr = arr.astype(np.float64)
  if arr.ndim != 3:
    raise ValueError(f'{name} must have shape [P, N, C], got shape {arr.shape}')
  num_models, num_examples, num_classes = arr.shape
  if num_models < 1:
    raise ValueError(f'{name} must hold at least one model (P >= 1), got shape {arr.shape}')
  if num_examples < 1 or num_classes < 1:
    raise ValueError(f'{name} must have N >= 1 and C >= 1, got shape {arr.shape}')
  if not np.all(np.isfinite(arr)):
    raise ValueError(f'{name} contains non-finite values')
  return arr


def _as_labels(labels: Any, num_examples: int, num_classes: int) -> np.ndarray:
  """Checks integer labels `[N]` in `[0, C)` and returns them as int64."""
  arr = np.asarray(labels)
  if arr.dtype.kind not in 'iu':
    raise TypeError(f'labels must be integers, got dtype {arr.dtype}')
  if arr.shape != (num_examples,):
    raise ValueError(f'labels must have shape [N={num_examples}], got shape {arr.shape}')
  if arr.min() < 0 or arr.max() >= num_classes:
    raise ValueError(
        f'labels must lie in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]')
  return arr.astype(np.int64)


def _label_log_probs(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """log softmax(logits)[..., label] per model and example: `[P, N, C]` → float64 `[P, N]`.

  The ensemble NLL only ever reads the true label's probability, so selection works on this
  `[P, N]` slice; the log-softmax normaliser is still taken over all C classes.
  """
  log_probs = predictive.member_log_probs(logits)
  return np.take_along_axis(log_probs, labels[None, :, None], axis=-1)[..., 0]


def greedy_selection(
    val_logits: Any,
    labels: Any,
    max_distinct: int,
    max_rounds: int | None = None,
) -> SelectionResult:
  """Greedy forward selection with replacement on validation NLL (Caruana et al. 2004).

  Starts from the empty ensemble. Each round considers adding every allowed pool model (already
  chosen ones included, so duplicates act as weights) and takes the one whose addition gives the
  multiset the lowest ensemble NLL; ties go to the lowest pool index. The first pick is therefore
  the best single model. Once `max_distinct` distinct models are in, only re-picks of chosen
  models are allowed. Selection stops when the best allowed addition does not lower the NLL
  strictly (beyond float64 round-off), or after `max_rounds` picks.

  The running state is the log of the summed member probabilities of the true label, so each round
  costs O(P·N) after an O(P·N·C) log-softmax up front, instead of re-averaging the multiset.

  Args:
    val_logits: validation logits of the pool, `[P, N, C]`, any real dtype.
    labels: integer validation labels `[N]` in `[0, C)`.
    max_distinct: the most distinct pool models the ensemble may hold (K in the paper), >= 1.
    max_rounds: the most picks (ensemble size counting duplicates), >= 1. Defaults to
      `DEFAULT_ROUNDS_PER_MEMBER * max_distinct`, a guard that lets weights get as fine as 1/10 of
      a uniform share without letting a pathological pool loop for long.

  Returns:
    A `SelectionResult` with at least one pick.
  """
  logits = _as_float64_logits(val_logits, 'val_logits')
  num_models, num_examples, num_classes = logits.shape
  labels = _as_labels(labels, num_examples, num_classes)
  if isinstance(max_distinct, bool) or int(max_distinct) != max_distinct or max_distinct < 1:
    raise ValueError(f'max_distinct must be an integer >= 1, got {max_distinct!r}')
  max_distinct = int(max_distinct)
  if max_rounds is None:
    max_rounds = DEFAULT_ROUNDS_PER_MEMBER * max_distinct
  elif isinstance(max_rounds, bool) or int(max_rounds) != max_rounds or max_rounds < 1:
    raise ValueError(f'max_rounds must be an integer >= 1 or None, got {max_rounds!r}')
  max_rounds = int(max_rounds)

  log_probs = _label_log_probs(logits, labels)  # [P, N]
  # log Σ_{k in multiset} p_k(y_n | x_n); −inf for the empty ensemble so logaddexp starts cleanly.
  log_sum = np.full(num_examples, -np.inf)
  current_nll = np.inf
  picks: list[int] = []
  history: list[float] = []
  counts: dict[int, int] = {}  # Insertion order = order of first pick.

  for _ in range(max_rounds):
    # NLL of every candidate multiset "current + model j", all j at once: [P].
    candidate_log_sum = np.logaddexp(log_sum[None, :], log_probs)
    candidate_nll = np.log(len(picks) + 1) - candidate_log_sum.mean(axis=1)
    if len(counts) >= max_distinct:
      allowed = np.zeros(num_models, dtype=bool)
      allowed[list(counts)] = True
      candidate_nll = np.where(allowed, candidate_nll, np.inf)
    best = int(np.argmin(candidate_nll))  # argmin returns the first minimum: lowest index wins.
    best_nll = float(candidate_nll[best])
    if picks and not best_nll < current_nll - _ROUNDOFF_RTOL * max(1.0, abs(current_nll)):
      break
    log_sum = candidate_log_sum[best]
    current_nll = best_nll
    picks.append(best)
    history.append(best_nll)
    counts[best] = counts.get(best, 0) + 1

  return SelectionResult(
      members=tuple(counts),
      counts=tuple(counts.values()),
      picks=tuple(picks),
      nll_history=tuple(history),
  )
