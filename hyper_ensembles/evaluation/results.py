"""metrics.json's results structure: every evaluation set's metrics from its member logits.

Owns what a run's metrics.json holds and how its keys are named; the logits come from predict.py
(or from saved `predictions/<set>.npz`), the maths from maths/. New evaluation sets (shifted, OOD)
plug in by name:

- OOD sets (`ood_<name>`, data/ood.py) get no accuracy or NLL (their labels are not ours): they
  are scored against the in-distribution `test` set, which must be evaluated in the same call —
  AUROC, AUPR and FPR at 95 % TPR, in-distribution the positive class, from the ensemble's max
  probability (`*_max_prob`) and its negative predictive entropy (`*_entropy`).
- Corrupted sets (`corrupt_<type>_<s>`, data/corrupted.py) get the usual metrics each, plus the
  means over types per severity (`corrupt_severity_<s>`) and over all of them (`corrupt_mean`).
- Temperature scaling (maths/temperature.py): with a mode (`config.evaluation.
  temperature_scaling`: 'ensemble', 'per_member' or '' for off) and the `validation` set among the
  sets, temperatures are fitted on validation and every entry above is computed again from the
  tempered logits under the key `<name>_tempered` (OOD scores from the tempered predictive), with
  the fit recorded under `temperature`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from absl import logging

from hyper_ensembles.data import corrupted, ood
from hyper_ensembles.maths import metrics as metrics_lib
from hyper_ensembles.maths import temperature

# --------------------------------------------------------------------------------------------------
# Temperature scaling in metrics.json: the mode, the set it is fitted on, the keys it adds.
# --------------------------------------------------------------------------------------------------

DEFAULT_MODE = 'ensemble'
MODES = temperature.MODES
# Key suffix of every tempered evaluation set in metrics.json: `test` → `test_tempered`.
SUFFIX = '_tempered'
# metrics.json entry recording the fitted temperatures: {"mode", "fitted_on", "values": [M floats]}.
RECORD_KEY = 'temperature'
FIT_SET = 'validation'


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


def tempered_predictions(predictions: dict[str, tuple], temperatures: Any) -> dict[str, tuple]:
  """`{set: (logits / T, labels)}` for every set of `{set: (logits [M, N, C], labels)}`."""
  return {name: (temperature.apply_temperatures(logits, temperatures), labels)
          for name, (logits, labels) in predictions.items()}


# --------------------------------------------------------------------------------------------------
# Metrics of every evaluation set.
# --------------------------------------------------------------------------------------------------


def metrics_from_predictions(predictions: dict[str, tuple], weights=None,
                             temperature_scaling: str = DEFAULT_MODE) -> dict:
  """Metrics of every evaluation set from its member logits `{set: (logits [M, N, C], labels)}`.

  Ordinary and corrupted sets get metrics.compute_metrics; OOD sets get `ood_results` against
  the `test` set (which must be present), plus the key `ood_positive_class`; corrupted sets add
  `corruption_aggregates`. `weights` (optional `[M]`) weight the members, as for selected
  ensembles with duplicates. With `temperature_scaling` ('ensemble' or 'per_member', '' = off;
  maths/temperature.py) and a `validation` set, all of it again as `<name>_tempered`, and the fitted
  temperatures as `temperature`.
  """
  mode = check_mode(temperature_scaling)
  results = _untempered_metrics(predictions, weights)
  if mode and FIT_SET in predictions:
    temperatures = temperature.fit_temperatures(*predictions[FIT_SET], mode, weights)
    tempered = _untempered_metrics(
        tempered_predictions(predictions, temperatures), weights)
    results.update({tempered_key(name): values for name, values in tempered.items()
                    if isinstance(values, dict)})
    results[RECORD_KEY] = record(mode, temperatures)
  results.update(corruption_aggregates(results))
  return results


def _untempered_metrics(predictions: dict[str, tuple], weights) -> dict:
  """Per-set metrics (ordinary, corrupted and OOD sets) without any aggregates."""
  results: dict = {}
  for name, (logits, labels) in predictions.items():
    if not ood.is_ood_set(name):
      results[name] = metrics_lib.compute_metrics(logits, labels, weights)
  ood_names = [name for name in predictions if ood.is_ood_set(name)]
  if ood_names and 'test' not in predictions:
    raise ValueError(f'OOD sets {ood_names} are scored against the test set; evaluate it too')
  for name in ood_names:
    results[name] = ood_results(predictions['test'][0], predictions[name][0], weights)
  if ood_names:
    results['ood_positive_class'] = 'in_distribution'  # docs/design.md §2: state the convention.
  return results


def ood_results(in_logits: np.ndarray, out_logits: np.ndarray, weights=None) -> dict[str, float]:
  """OOD-detection metrics of member logits `[M, N, C]`: in-distribution vs OOD inputs.

  In-distribution is the positive class; scores (higher = more in-distribution) are the ensemble
  predictive's max probability and its negative entropy (metrics.ood_scores).
  """
  scores_in = metrics_lib.ood_scores(in_logits, weights)
  scores_out = metrics_lib.ood_scores(out_logits, weights)
  out = {'num_examples': int(out_logits.shape[1])}
  for score, suffix in (('max_prob', 'max_prob'), ('neg_entropy', 'entropy')):
    values = metrics_lib.ood_metrics(scores_in[score], scores_out[score])
    out.update({f'{key}_{suffix}': value for key, value in values.items()})
  return out


def corruption_aggregates(results: dict[str, dict]) -> dict[str, dict]:
  """Means of every scalar metric over corrupted sets: per severity and over all of them.

  Returns `{'corrupt_severity_<s>': {...}, 'corrupt_mean': {...}}` (empty without corrupted sets);
  each also records `num_sets`, the number of (type, severity) sets averaged. Tempered corrupted
  sets (`corrupt_<type>_<s>_tempered`) get the same means as `corrupt_severity_<s>_tempered` and
  `corrupt_mean_tempered`.
  """
  tempered = {untempered_key(name): values for name, values in results.items()
              if is_tempered_key(name)}
  out = _corruption_means(results)
  out.update({tempered_key(k): v for k, v in _corruption_means(tempered).items()})
  return out


def _corruption_means(results: dict[str, dict]) -> dict[str, dict]:
  by_severity: dict[int, list[dict]] = {}
  for name, values in results.items():
    parsed = corrupted.parse_set_name(name)
    if parsed is not None:
      by_severity.setdefault(parsed[1], []).append(values)
  if not by_severity:
    return {}

  def mean(sets: list[dict]) -> dict:
    keys = [k for k, v in sets[0].items() if isinstance(v, int | float)]
    means = {k: float(np.mean([s[k] for s in sets])) for k in keys}
    means['num_sets'] = len(sets)
    return means

  out = {f'{corrupted.PREFIX}severity_{s}': mean(sets) for s, sets in sorted(by_severity.items())}
  out[f'{corrupted.PREFIX}mean'] = mean([v for sets in by_severity.values() for v in sets])
  return out


def metric_by_severity(results: dict, key: str, suffix: str = '') -> dict[int, list[float]]:
  """`{severity: [value of each corruption type]}` of one metric in a metrics.json, severity 0 the
  clean `test` set (the paper's Fig. 3 x-axis); `suffix='_tempered'` reads the tempered entries."""
  out: dict[int, list[float]] = {}
  if key in results.get('test' + suffix, {}):
    out[0] = [float(results['test' + suffix][key])]
  for name, values in results.items():
    if not name.endswith(suffix) or not isinstance(values, dict) or key not in values:
      continue
    parsed = corrupted.parse_set_name(name[:len(name) - len(suffix)])
    if parsed is not None:
      out.setdefault(parsed[1], []).append(float(values[key]))
  return dict(sorted(out.items()))


def scalar_summaries(results: dict[str, dict]) -> dict[str, float]:
  """Flattens `{set: metrics}` into `{'set/metric': value}` scalars for the metric writer."""
  out = {}
  for name, values in results.items():
    for key, value in values.items():
      if isinstance(value, list):
        out.update({f'{name}/{key}_{k}': v for k, v in enumerate(value)})
      elif not isinstance(value, str):  # e.g. the temperature's mode: not a scalar
        out[f'{name}/{key}'] = value
  return out


def log_results(results: dict) -> None:
  """Logs the headline metrics of every evaluation set; per-(type, severity) corrupted sets are
  summarised by their aggregates instead of 19 × 5 lines."""
  for name, r in results.items():
    if name == RECORD_KEY:
      logging.info('temperature (%s, fitted on %s): %s', r['mode'], r['fitted_on'],
                   ' '.join(f'{t:.4f}' for t in r['values']))
    if (not isinstance(r, dict)
        or corrupted.parse_set_name(untempered_key(name)) is not None):
      continue
    if 'nll' in r:
      logging.info('%s: nll %.4f  accuracy %.4f  ece %.4f  brier %.4f', name, r['nll'],
                   r['accuracy'], r['ece'], r['brier'])
    elif 'auroc_max_prob' in r:
      logging.info('%s: auroc %.4f / %.4f  aupr %.4f / %.4f  fpr@95 %.4f / %.4f (max prob / '
                   'entropy)', name, r['auroc_max_prob'], r['auroc_entropy'], r['aupr_max_prob'],
                   r['aupr_entropy'], r['fpr_at_95_tpr_max_prob'], r['fpr_at_95_tpr_entropy'])
