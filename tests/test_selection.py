"""Tests for greedy ensemble selection with replacement
(`hyper_ensembles/maths/greedy_selection.py`).

Oracles are independent of the module: ensemble NLLs are recomputed here by averaging explicit
softmax probabilities (never via the module's log-space running sums), and greedy's choices are
checked against brute force over candidates or over all small multisets. No golden numbers.
"""

import itertools
import json

import numpy as np
import pytest

from hyper_ensembles.maths import greedy_selection, predictive


def _oracle_nll(logits, labels, multiset):
  """NLL of the uniform average of softmax probabilities over `multiset` (pool indices)."""
  z = np.asarray(logits, dtype=np.float64)[list(multiset)]
  probs = np.exp(z - z.max(axis=-1, keepdims=True))
  probs /= probs.sum(axis=-1, keepdims=True)
  mean_probs = probs.mean(axis=0)
  return float(-np.mean(np.log(mean_probs[np.arange(len(labels)), labels])))


def _binary_logits(p_label, labels):
  """Two-class logits whose softmax puts probability `p_label[n]` on `labels[n]`."""
  p_label = np.asarray(p_label, dtype=np.float64)
  logits = np.zeros((len(labels), 2))
  logits[np.arange(len(labels)), labels] = np.log(p_label)
  logits[np.arange(len(labels)), 1 - labels] = np.log1p(-p_label)
  return logits


def _random_pool(seed, num_models=6, num_examples=40, num_classes=4, scale=3.0):
  rng = np.random.default_rng(seed)
  logits = scale * rng.standard_normal((num_models, num_examples, num_classes))
  labels = rng.integers(0, num_classes, size=num_examples)
  return logits, labels


def _twice_pool():
  """A very good model A (index 0), a complementary one B (index 1) and a poor decoy (index 2).

  A puts 0.9 on the label of 8 examples and 0.05 on the other 2; B puts 0.3 and 0.9. Mixing 2:1
  in favour of A beats 1:1, so greedy must re-pick A.
  """
  labels = np.array([0, 1] * 5)
  good = np.array([0.9] * 8 + [0.05] * 2)
  comp = np.array([0.3] * 8 + [0.9] * 2)
  decoy = np.full(10, 0.4)
  logits = np.stack([_binary_logits(p, labels) for p in (good, comp, decoy)])
  return logits, labels


def _check_greedy_steps(logits, labels, result, max_distinct, max_rounds):
  """Replays `result` and checks every pick is the best allowed single addition (brute force)."""
  num_models = logits.shape[0]
  current = []
  current_nll = np.inf
  for step, pick in enumerate(result.picks):
    allowed = range(num_models) if len(set(current)) < max_distinct else sorted(set(current))
    scores = {j: _oracle_nll(logits, labels, [*current, j]) for j in allowed}
    best_score = min(scores.values())
    # The pick attains the minimum, and no lower index attains it too (ties → lowest index).
    assert scores[pick] == pytest.approx(best_score, rel=1e-10, abs=1e-12)
    assert all(scores[j] > best_score + 1e-10 for j in allowed if j < pick)
    assert result.nll_history[step] == pytest.approx(scores[pick], rel=1e-10, abs=1e-12)
    assert scores[pick] < current_nll
    current.append(pick)
    current_nll = scores[pick]
  if len(result.picks) < max_rounds:
    # Stopped early: no allowed addition improves strictly (up to round-off).
    allowed = range(num_models) if len(set(current)) < max_distinct else sorted(set(current))
    for j in allowed:
      assert _oracle_nll(logits, labels, [*current, j]) >= current_nll - 1e-10


def test_first_pick_is_best_single_model():
  for seed in range(5):
    logits, labels = _random_pool(seed)
    single = [_oracle_nll(logits, labels, [j]) for j in range(logits.shape[0])]
    result = greedy_selection.greedy_selection(logits, labels, max_distinct=3)
    assert result.picks[0] == int(np.argmin(single))
    assert result.nll_history[0] == pytest.approx(min(single), rel=1e-12)


def test_max_rounds_one_matches_exhaustive_best_single():
  logits, labels = _random_pool(7, num_models=3)
  result = greedy_selection.greedy_selection(logits, labels, max_distinct=3, max_rounds=1)
  best = min(range(3), key=lambda j: _oracle_nll(logits, labels, [j]))
  assert result.picks == (best,)
  assert result.members == (best,)
  assert result.counts == (1,)


def test_nll_history_strictly_decreasing():
  for seed in range(5):
    logits, labels = _random_pool(seed, num_models=8)
    result = greedy_selection.greedy_selection(logits, labels, max_distinct=5)
    history = np.asarray(result.nll_history)
    assert len(history) >= 2  # Random pools reliably benefit from some averaging.
    assert np.all(np.diff(history) < 0)


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('max_distinct', [1, 2, 3])
def test_each_step_is_best_single_addition(seed, max_distinct):
  logits, labels = _random_pool(seed, num_models=5, num_examples=30)
  result = greedy_selection.greedy_selection(logits, labels, max_distinct=max_distinct,
  max_rounds=8)
  _check_greedy_steps(logits, labels, result, max_distinct, max_rounds=8)


def test_tiny_pool_two_rounds_matches_brute_force():
  # P=3, at most 2 picks: greedy's pick 1 is the best single model, and pick 2 is the best
  # completion of it among all 3 candidates (a re-pick included).
  for seed in range(5):
    logits, labels = _random_pool(100 + seed, num_models=3, num_examples=25)
    result = greedy_selection.greedy_selection(logits, labels, max_distinct=3, max_rounds=2)
    first = min(range(3), key=lambda j: _oracle_nll(logits, labels, [j]))
    assert result.picks[0] == first
    seconds = {j: _oracle_nll(logits, labels, [first, j]) for j in range(3)}
    best_second = min(seconds, key=seconds.get)
    if seconds[best_second] < _oracle_nll(logits, labels, [first]) - 1e-10:
      assert result.picks == (first, best_second)
    else:
      assert result.picks == (first,)


def test_model_chosen_twice_matches_brute_force_over_multisets():
  logits, labels = _twice_pool()
  # Brute force over every multiset of size 1..3: the optimum is {A, A, B}.
  multisets = [
      ms for size in (1, 2, 3)
      for ms in itertools.combinations_with_replacement(range(3), size)]
  scores = {ms: _oracle_nll(logits, labels, ms) for ms in multisets}
  best = min(scores, key=scores.get)
  assert best == (0, 0, 1)  # Sanity of the construction: weighting A 2:1 beats 1:1.

  result = greedy_selection.greedy_selection(logits, labels, max_distinct=2, max_rounds=3)
  assert result.picks == (0, 1, 0)
  assert result.members == (0, 1)
  assert result.counts == (2, 1)
  np.testing.assert_allclose(result.weights, [2 / 3, 1 / 3])
  assert result.nll_history[-1] == pytest.approx(scores[best], rel=1e-12)
  _check_greedy_steps(logits, labels, result, max_distinct=2, max_rounds=3)


def test_final_nll_matches_weighted_recomputation():
  for seed in range(4):
    logits, labels = _random_pool(seed, num_models=7)
    result = greedy_selection.greedy_selection(logits, labels, max_distinct=4)
    multiset = [m for m, c in zip(result.members, result.counts) for _ in range(c)]
    assert sorted(multiset) == sorted(result.picks)
    expected = _oracle_nll(logits, labels, multiset)
    assert result.nll_history[-1] == pytest.approx(expected, rel=1e-10)
    # The weighted host NLL of predictive.py agrees with the same oracle.
    weighted = float(predictive.ensemble_nll(logits[list(result.members)], labels, result.weights))
    assert weighted == pytest.approx(expected, rel=1e-10)


def test_identical_pool_stops_after_one_pick():
  logits, labels = _random_pool(3, num_models=1)
  pool = np.repeat(logits, 5, axis=0)
  result = greedy_selection.greedy_selection(pool, labels, max_distinct=5)
  assert result.picks == (0,)
  assert result.members == (0,)
  assert result.counts == (1,)


def test_ties_broken_by_lowest_index():
  logits, labels = _random_pool(11, num_models=3)
  single = [_oracle_nll(logits, labels, [j]) for j in range(3)]
  best = int(np.argmin(single))
  worse = [j for j in range(3) if j != best]
  # Two identical copies of the best model at indices 1 and 2, a worse model at 0.
  pool = np.stack([logits[worse[0]], logits[best], logits[best]])
  result = greedy_selection.greedy_selection(pool, labels, max_distinct=1)
  assert result.picks == (1,)
  # Same with the copies first: index 0 wins.
  pool = np.stack([logits[best], logits[best], logits[worse[0]]])
  result = greedy_selection.greedy_selection(pool, labels, max_distinct=1)
  assert result.picks == (0,)


def test_max_distinct_cap_holds():
  for seed in range(5):
    logits, labels = _random_pool(seed, num_models=10)
    free = greedy_selection.greedy_selection(logits, labels, max_distinct=10)
    assert len(free.members) > 2  # Otherwise the cap below would not bind.
    capped = greedy_selection.greedy_selection(logits, labels, max_distinct=2, max_rounds=12)
    assert len(capped.members) <= 2
    assert set(capped.picks) == set(capped.members)
    _check_greedy_steps(logits, labels, capped, max_distinct=2, max_rounds=12)


def test_max_distinct_one_gives_single_model():
  logits, labels = _random_pool(5, num_models=6)
  result = greedy_selection.greedy_selection(logits, labels, max_distinct=1)
  # Re-picking the only member never changes the NLL, so selection stops after one pick.
  assert result.picks == result.members
  assert result.counts == (1,)


def test_max_rounds_respected_and_default_terminates():
  logits, labels = _twice_pool()
  result = greedy_selection.greedy_selection(logits, labels, max_distinct=2, max_rounds=2)
  assert result.picks == (0, 1)
  result = greedy_selection.greedy_selection(logits, labels, max_distinct=2)
  assert len(result.picks) <= greedy_selection.DEFAULT_ROUNDS_PER_MEMBER * 2


def test_low_precision_input_matches_float64():
  logits, labels = _random_pool(2, num_models=5)
  logits = logits.astype(np.float16)
  result16 = greedy_selection.greedy_selection(logits, labels, max_distinct=3)
  result64 = greedy_selection.greedy_selection(logits.astype(np.float64), labels, max_distinct=3)
  assert result16 == result64


def test_result_json_round_trip():
  logits, labels = _twice_pool()
  result = greedy_selection.greedy_selection(logits, labels, max_distinct=2, max_rounds=3)
  d = json.loads(json.dumps(result.to_json()))
  assert d['members'] == [0, 1]
  assert d['counts'] == [2, 1]
  assert d['picks'] == [0, 1, 0]
  np.testing.assert_allclose(d['weights'], [2 / 3, 1 / 3])
  assert greedy_selection.SelectionResult.from_json(d) == result


def test_host_ensemble_nll_matches_oracle():
  # predictive.ensemble_nll on float64 NumPy input: how any selected ensemble is scored.
  logits, labels = _random_pool(9, num_models=4)
  assert float(predictive.ensemble_nll(logits, labels)) == pytest.approx(
      _oracle_nll(logits, labels, range(4)), rel=1e-12)
  # Integer weights act as multiplicities; zero weights drop a member.
  assert float(predictive.ensemble_nll(logits, labels, [2, 0, 1, 0])) == pytest.approx(
      _oracle_nll(logits, labels, [0, 0, 2]), rel=1e-12)
  # Extreme logits stay finite (log-space maths, no overflow).
  big = np.stack([_binary_logits(np.full(4, 0.5), np.array([0, 1, 0, 1])) + 1e4])
  assert float(predictive.ensemble_nll(big, np.array([0, 1, 0, 1]))) == pytest.approx(
      np.log(2))


@pytest.mark.parametrize(
    ('logits_shape', 'labels', 'kwargs', 'error'),
    [
        ((3, 4), [0, 1, 0], {}, ValueError),  # Not [P, N, C].
        ((0, 4, 2), [0, 1, 0, 1], {}, ValueError),  # Empty pool.
        ((2, 4, 2), [0, 1, 0], {}, ValueError),  # Labels length mismatch.
        ((2, 4, 2), [0, 1, 2, 1], {}, ValueError),  # Label out of range.
        ((2, 4, 2), [0, -1, 0, 1], {}, ValueError),  # Negative label.
        ((2, 4, 2), [0.0, 1.0, 0.0, 1.0], {}, TypeError),  # Float labels.
        ((2, 4, 2), [0, 1, 0, 1], {'max_distinct': 0}, ValueError),
        ((2, 4, 2), [0, 1, 0, 1], {'max_rounds': 0}, ValueError),
    ],
)
def test_invalid_inputs_raise(logits_shape, labels, kwargs, error):
  kwargs = {'max_distinct': 2, **kwargs}
  with pytest.raises(error):
    greedy_selection.greedy_selection(np.zeros(logits_shape), np.asarray(labels), **kwargs)


def test_non_finite_logits_raise():
  logits = np.zeros((2, 3, 2))
  logits[1, 2, 0] = np.nan
  with pytest.raises(ValueError, match='non-finite'):
    greedy_selection.greedy_selection(logits, np.array([0, 1, 0]), max_distinct=2)
