"""Tests for hyper_ensembles.maths.metrics against independent oracles (sklearn, scipy, brute
force)."""

import itertools
import json

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from hyper_ensembles.maths import metrics

# (M, N, C): M = 1 and 4, C = 3 and 10, a few N.
SHAPES = [(1, 50, 3), (4, 37, 3), (1, 64, 10), (4, 200, 10)]


def _data(shape, seed=0, scale=2.0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=scale, size=shape).astype(np.float32)
  labels = rng.integers(0, shape[-1], size=shape[1])
  return logits, labels


def _softmax(z):
  z = np.asarray(z, dtype=np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _loop_ensemble_probs(logits, weights=None):
  num_members = logits.shape[0]
  w = np.ones(num_members) if weights is None else np.asarray(weights, dtype=np.float64)
  w = w / w.sum()
  return sum(w[k] * _softmax(logits[k]) for k in range(num_members))


def _brute_force_ece(probs, labels, num_bins=15):
  """Plain-Python ECE: bin b = (b/B, (b+1)/B], first bin also holds 0."""
  n = len(labels)
  total = 0.0
  for b in range(num_bins):
    lo, hi = b / num_bins, (b + 1) / num_bins
    members = []
    for i in range(n):
      conf = float(max(probs[i]))
      if (lo < conf <= hi) or (b == 0 and conf == 0.0):
        members.append(i)
    if not members:
      continue
    acc = sum(int(np.argmax(probs[i]) == labels[i]) for i in members) / len(members)
    conf = sum(float(max(probs[i])) for i in members) / len(members)
    total += len(members) / n * abs(acc - conf)
  return total


@pytest.mark.parametrize('shape', SHAPES)
def test_ensemble_probs_matches_member_loop(shape):
  logits, _ = _data(shape, seed=1)
  np.testing.assert_allclose(metrics.ensemble_probs(logits), _loop_ensemble_probs(logits),
                             atol=1e-12)
  weights = np.arange(1, shape[0] + 1, dtype=float)
  np.testing.assert_allclose(
      metrics.ensemble_probs(logits, weights), _loop_ensemble_probs(logits, weights), atol=1e-12)


def test_weights_duplicates_and_zero_weight():
  logits, labels = _data((3, 40, 10), seed=2)
  a, b, c = logits
  by_weight = metrics.compute_metrics(logits[:2], labels, [2, 1])
  by_duplicate = metrics.compute_metrics(np.stack([a, a, b]), labels)
  for key in ('nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy'):
    assert by_weight[key] == pytest.approx(by_duplicate[key], abs=1e-12), key
  zero = metrics.compute_metrics(logits, labels, [1, 0, 3])
  dropped = metrics.compute_metrics(np.stack([a, c]), labels, [1, 3])
  for key in ('nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy', 'disagreement',
              'avg_kl'):
    assert zero[key] == pytest.approx(dropped[key], abs=1e-12), key
  assert len(zero['member_nll']) == 3


def test_extreme_logits_stay_finite():
  # Softmax probabilities underflow to exactly 0 here; no log(0) may leak into any metric.
  logits = np.array([[[1000.0, -1000.0, 0.0]], [[-1000.0, 1000.0, 0.0]]])
  result = metrics.compute_metrics(logits, np.array([2]))
  assert all(np.isfinite(v) for v in result.values() if isinstance(v, float))
  # Both members give class 2 probability e^-1000, so p̄ = e^-1000 too.
  assert result['nll'] == pytest.approx(1000.0)
  assert result['gibbs_nll'] == pytest.approx(1000.0)
  assert result['avg_kl'] == pytest.approx(2000.0)


@pytest.mark.parametrize('shape', SHAPES)
def test_nll_and_accuracy_match_sklearn(shape):
  logits, labels = _data(shape, seed=3)
  probs = _loop_ensemble_probs(logits)
  num_classes = shape[-1]
  assert metrics.nll(metrics.ensemble_log_probs(logits), labels) == pytest.approx(
      skm.log_loss(labels, probs, labels=range(num_classes)), rel=1e-9)
  assert metrics.accuracy(probs, labels) == pytest.approx(
      skm.accuracy_score(labels, probs.argmax(-1)))


def test_nll_rejects_probabilities():
  logits, labels = _data((1, 10, 3), seed=4)
  with pytest.raises(ValueError, match='log-probabilities'):
    metrics.nll(metrics.ensemble_probs(logits), labels)


@pytest.mark.parametrize('shape', SHAPES)
def test_brier_matches_loop(shape):
  logits, labels = _data(shape, seed=5)
  probs = _loop_ensemble_probs(logits)
  expected = 0.0
  for i in range(shape[1]):
    for c in range(shape[-1]):
      expected += (probs[i, c] - (1.0 if labels[i] == c else 0.0)) ** 2
  assert metrics.brier_score(probs, labels) == pytest.approx(expected / shape[1], rel=1e-12)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('num_bins', [15, 4])
def test_ece_matches_brute_force(shape, num_bins):
  logits, labels = _data(shape, seed=6)
  probs = _loop_ensemble_probs(logits)
  assert metrics.expected_calibration_error(probs, labels, num_bins) == pytest.approx(
      _brute_force_ece(probs, labels, num_bins), abs=1e-12)


def test_ece_bin_edges():
  # Confidences exactly on bin edges: 1/3 = 5/15 (bin 4), 1.0 (last bin), 0.5 (C=2) = 7.5/15.
  probs = np.array([
      [1 / 3, 1 / 3, 1 / 3],
      [1.0, 0.0, 0.0],
      [0.5, 0.5, 0.0],
      [0.2, 0.8, 0.0],
      [0.4, 0.6, 0.0],
  ])
  labels = np.array([0, 0, 1, 1, 2])
  assert list(metrics.calibration_bin_indices(probs.max(-1), 15)) == [4, 14, 7, 11, 8]
  assert list(metrics.calibration_bin_indices(np.array([0.0, 1 / 15, 2 / 15]), 15)) == [0, 0, 1]
  assert metrics.expected_calibration_error(probs, labels) == pytest.approx(
      _brute_force_ece(probs, labels), abs=1e-12)


def test_ece_closed_form_perfectly_calibrated():
  # Every prediction has confidence 0.8 and 80 % are correct: ECE = |0.8 - 0.8| = 0.
  probs = np.tile([0.8, 0.2], (50, 1))
  labels = np.array([0] * 40 + [1] * 10)
  assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
  # And all wrong at confidence 0.8 gives ECE 0.8.
  assert metrics.expected_calibration_error(probs, np.ones(50, int)) == pytest.approx(0.8)


@pytest.mark.parametrize('shape', SHAPES)
def test_disagreement_matches_double_loop(shape):
  logits, _ = _data(shape, seed=7, scale=0.5)  # Small scale: members disagree often.
  num_members, num_examples, _ = shape
  pairs = list(itertools.combinations(range(num_members), 2))
  if not pairs:
    assert metrics.pairwise_disagreement(logits) == 0.0
    return
  total = 0.0
  for k, j in pairs:
    differ = 0
    for i in range(num_examples):
      differ += int(np.argmax(logits[k, i]) != np.argmax(logits[j, i]))
    total += differ / num_examples
  expected = total / len(pairs)
  assert expected > 0
  assert metrics.pairwise_disagreement(logits) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize('shape', SHAPES)
def test_avg_kl_matches_scipy_entropy(shape):
  logits, _ = _data(shape, seed=8)
  num_members, num_examples, _ = shape
  probs = [_softmax(logits[k]) for k in range(num_members)]
  pairs = list(itertools.permutations(range(num_members), 2))
  if not pairs:
    assert metrics.average_pairwise_kl(logits) == 0.0
    return
  total = 0.0
  for k, j in pairs:
    total += np.mean([scipy.stats.entropy(probs[k][i], probs[j][i])
                      for i in range(num_examples)])
  assert metrics.average_pairwise_kl(logits) == pytest.approx(total / len(pairs), rel=1e-9)


@pytest.mark.parametrize('shape', SHAPES)
def test_gibbs_and_members_match_sklearn(shape):
  logits, labels = _data(shape, seed=9)
  num_members, _, num_classes = shape
  weights = np.linspace(1.0, 2.0, num_members)
  result = metrics.compute_metrics(logits, labels, weights)
  member_nll = [skm.log_loss(labels, _softmax(logits[k]), labels=range(num_classes))
                for k in range(num_members)]
  member_acc = [skm.accuracy_score(labels, logits[k].argmax(-1)) for k in range(num_members)]
  np.testing.assert_allclose(result['member_nll'], member_nll, rtol=1e-9)
  np.testing.assert_allclose(result['member_accuracy'], member_acc)
  w = weights / weights.sum()
  assert result['gibbs_nll'] == pytest.approx(np.dot(w, member_nll), rel=1e-9)
  assert result['gibbs_accuracy'] == pytest.approx(np.dot(w, member_acc), rel=1e-12)
  # Jensen: the ensemble NLL never exceeds the Gibbs NLL.
  assert result['nll'] <= result['gibbs_nll'] + 1e-12


@pytest.mark.parametrize('shape', SHAPES)
def test_compute_metrics_keys_and_json(shape):
  logits, labels = _data(shape, seed=10)
  result = metrics.compute_metrics(logits, labels)
  assert set(result) == {'nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy',
                         'disagreement', 'avg_kl', 'member_nll', 'member_accuracy'}
  assert json.loads(json.dumps(result)) == result
  for key, value in result.items():
    if key.startswith('member_'):
      assert len(value) == shape[0] and all(type(v) is float for v in value)
    else:
      assert type(value) is float, key
  probs = _loop_ensemble_probs(logits)
  assert result['nll'] == pytest.approx(
      skm.log_loss(labels, probs, labels=range(shape[-1])), rel=1e-9)
  assert result['ece'] == pytest.approx(_brute_force_ece(probs, labels), abs=1e-12)
  if shape[0] == 1:
    assert result['disagreement'] == 0.0 and result['avg_kl'] == 0.0
    assert result['gibbs_nll'] == pytest.approx(result['nll'], rel=1e-12)


def _brute_force_fpr_at_95(in_scores, out_scores):
  for t in sorted(set(np.concatenate([in_scores, out_scores]).tolist()), reverse=True):
    tpr = np.mean(in_scores >= t)
    if tpr >= 0.95:
      return np.mean(out_scores >= t)
  raise AssertionError('unreachable')


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('ties', [False, True])
def test_ood_metrics_match_sklearn(seed, ties):
  rng = np.random.default_rng(seed)
  in_scores = rng.normal(1.0, 1.0, size=40 + 7 * seed)
  out_scores = rng.normal(0.0, 1.0, size=60 - 5 * seed)
  if ties:  # Coarse rounding creates many ties, within and across the two sets.
    in_scores, out_scores = np.round(in_scores), np.round(out_scores)
  scores = np.concatenate([in_scores, out_scores])
  is_in = np.r_[np.ones(in_scores.size), np.zeros(out_scores.size)]
  result = metrics.ood_metrics(in_scores, out_scores)
  assert result['auroc'] == pytest.approx(skm.roc_auc_score(is_in, scores), abs=1e-12)
  assert result['aupr'] == pytest.approx(skm.average_precision_score(is_in, scores), abs=1e-12)
  assert result['fpr_at_95_tpr'] == pytest.approx(
      _brute_force_fpr_at_95(in_scores, out_scores), abs=1e-12)
  assert json.loads(json.dumps(result)) == result


def test_ood_metrics_perfect_separation():
  result = metrics.ood_metrics(np.array([2.0, 3.0, 4.0]), np.array([-1.0, 0.0]))
  assert result == {'auroc': 1.0, 'aupr': 1.0, 'fpr_at_95_tpr': 0.0}


@pytest.mark.parametrize('shape', SHAPES)
def test_ood_scores(shape):
  logits, _ = _data(shape, seed=11)
  weights = np.arange(1, shape[0] + 1, dtype=float)
  scores = metrics.ood_scores(logits, weights)
  probs = _loop_ensemble_probs(logits, weights)
  np.testing.assert_allclose(scores['max_prob'], probs.max(-1), rtol=1e-12)
  np.testing.assert_allclose(
      scores['neg_entropy'], [-scipy.stats.entropy(p) for p in probs], rtol=1e-9)
  # Confident (low-entropy) inputs score higher than a uniform prediction.
  uniform = metrics.ood_scores(np.zeros((1, 1, shape[-1])))
  assert np.all(scores['neg_entropy'] >= uniform['neg_entropy'][0] - 1e-12)
  assert uniform['neg_entropy'][0] == pytest.approx(-np.log(shape[-1]))


def test_invalid_inputs_raise():
  logits, labels = _data((2, 5, 3), seed=12)
  with pytest.raises(ValueError):
    metrics.compute_metrics(logits[0], labels)
  with pytest.raises(ValueError):
    metrics.compute_metrics(logits, labels + 3)
  with pytest.raises(ValueError):
    metrics.compute_metrics(logits, labels, [1.0, -1.0])
  with pytest.raises(ValueError):
    metrics.compute_metrics(logits, labels, [0.0, 0.0])
  with pytest.raises(ValueError):
    metrics.ood_metrics(np.array([]), np.array([1.0]))
