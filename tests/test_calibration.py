"""Calibration against brute-force oracles: temperature scaling (maths/temperature.py), the
reliability bins (maths/metrics.py) and the tempered entries of metrics.json (evaluation/
results.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.maths import metrics as metrics_lib
from hyper_ensembles.maths import temperature


def _calibrated_data(num_members=3, n=4000, c=5, scale=2.0, seed=0):
  """Logits whose labels are drawn from the ensemble's own predictive: calibrated by design."""
  rng = np.random.default_rng(seed)
  logits = scale * rng.standard_normal((num_members, n, c))
  p_bar = metrics_lib.ensemble_probs(logits)
  labels = np.array([rng.choice(c, p=p) for p in p_bar])
  return logits, labels


def _grid_fit(logits, labels, weights=None, num=2001):
  grid = np.exp(np.linspace(np.log(temperature.T_MIN), np.log(temperature.T_MAX), num))
  values = [temperature.tempered_nll(logits, labels, t, weights) for t in grid]
  return grid, np.array(values)


@pytest.mark.parametrize('scale,weights', [(1.0, None), (4.0, None), (6.0, [3.0, 0.0, 1.0])])
def test_fit_matches_brute_force_grid(scale, weights):
  logits, labels = _calibrated_data(n=600, scale=2.0, seed=1)
  logits = logits * scale  # over-confident for scale > 1
  fitted = temperature.fit_temperature(logits, labels, weights)
  grid, values = _grid_fit(logits, labels, weights)
  best = int(np.argmin(values))
  # Within one grid step of the brute-force minimiser, and at least as good as any grid point.
  step = grid[1] / grid[0]
  assert grid[best] / step <= fitted <= grid[best] * step
  assert temperature.tempered_nll(logits, labels, fitted, weights) <= values.min() + 1e-9


def test_calibrated_data_gives_t_near_one_and_overconfidence_t_above_one():
  logits, labels = _calibrated_data()
  assert temperature.fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.08)
  assert temperature.fit_temperature(3.0 * logits, labels) == pytest.approx(3.0, rel=0.1)
  assert temperature.fit_temperature(0.5 * logits, labels) == pytest.approx(0.5, rel=0.1)


def test_flat_objective_keeps_t_one():
  logits = np.zeros((2, 10, 4))  # every temperature gives the same NLL
  assert temperature.fit_temperature(logits, np.arange(10) % 4) == 1.0


def test_per_member_fits_each_member_alone():
  logits, labels = _calibrated_data(n=800)
  logits = logits * np.array([1.0, 2.0, 4.0])[:, None, None]
  temps = temperature.fit_temperatures(logits, labels, 'per_member')
  for k in range(3):
    assert temps[k] == pytest.approx(temperature.fit_temperature(logits[k:k + 1], labels))
  assert temps[0] < temps[1] < temps[2]
  ensemble = temperature.fit_temperatures(logits, labels, 'ensemble')
  assert np.all(ensemble == ensemble[0])


def test_unknown_mode_names_choices():
  with pytest.raises(ValueError, match='ensemble, per_member'):
    results_lib.check_mode('global')
  logits, labels = _calibrated_data(n=20, seed=1)
  for mode in ('global', ''):
    with pytest.raises(ValueError, match='ensemble, per_member'):
      temperature.fit_temperatures(logits, labels, mode)


def test_tempered_metrics_in_metrics_from_predictions():
  logits, labels = _calibrated_data(n=300, seed=2)
  hot = 3.0 * logits
  test_logits, test_labels = _calibrated_data(n=200, seed=3)
  predictions = {'validation': (hot, labels), 'test': (3.0 * test_logits, test_labels),
                 'ood_noise': (0.1 * test_logits, test_labels)}
  results = results_lib.metrics_from_predictions(predictions, temperature_scaling='ensemble')
  record = results['temperature']
  assert record['mode'] == 'ensemble' and len(record['values']) == 3
  t = record['values'][0]
  assert t > 2.0
  expected = metrics_lib.compute_metrics(hot / t, labels)
  for key in ('nll', 'ece', 'brier', 'accuracy'):
    assert results['validation_tempered'][key] == pytest.approx(expected[key], rel=1e-9)
  assert results['validation_tempered']['nll'] < results['validation']['nll']
  # OOD scores from the tempered predictive, against the tempered test set.
  ood = results_lib.ood_results(3.0 * test_logits / t, 0.1 * test_logits / t)
  assert results['ood_noise_tempered'] == pytest.approx(ood)
  # Off: no tempered keys. T = 1 reproduces the raw metrics.
  off = results_lib.metrics_from_predictions(predictions, temperature_scaling='')
  assert not any(k.endswith('_tempered') for k in off) and 'temperature' not in off
  assert metrics_lib.compute_metrics(temperature.apply_temperatures(hot, [1.0] * 3), labels) == \
      metrics_lib.compute_metrics(hot, labels)


def test_tempered_corruption_aggregates():
  logits, labels = _calibrated_data(n=100, seed=4)
  predictions = {'validation': (2 * logits, labels), 'corrupt_fog_1': (logits, labels),
                 'corrupt_snow_1': (3 * logits, labels), 'corrupt_fog_2': (logits / 2, labels)}
  results = results_lib.metrics_from_predictions(predictions)
  for suffix in ('', '_tempered'):
    parts = [results[f'corrupt_{t}_1{suffix}']['nll'] for t in ('fog', 'snow')]
    assert results[f'corrupt_severity_1{suffix}']['nll'] == pytest.approx(np.mean(parts))
    assert results[f'corrupt_mean{suffix}']['num_sets'] == 3


def _loop_bins(probs, labels, num_bins):
  count, acc, conf = np.zeros(num_bins), np.zeros(num_bins), np.zeros(num_bins)
  for p, y in zip(probs, labels):
    c = max(p)
    b = next(i for i in range(num_bins) if c <= (i + 1) / num_bins or i == num_bins - 1)
    count[b] += 1
    acc[b] += float(np.argmax(p) == y)
    conf[b] += c
  with np.errstate(invalid='ignore'):
    return count, acc / count, conf / count


@pytest.mark.parametrize('num_bins', [1, 10, 15])
def test_reliability_bins_against_loop_and_ece(num_bins):
  logits, labels = _calibrated_data(n=500, seed=5)
  probs = metrics_lib.ensemble_probs(3 * logits)
  bins = metrics_lib.reliability_bins(probs, labels, num_bins)
  count, acc, conf = _loop_bins(probs, labels, num_bins)
  np.testing.assert_array_equal(bins['count'], count)
  np.testing.assert_allclose(bins['accuracy'], acc, equal_nan=True)
  np.testing.assert_allclose(bins['confidence'], conf, equal_nan=True)
  assert bins['ece'] == pytest.approx(
      metrics_lib.expected_calibration_error(probs, labels, num_bins), abs=1e-12)
