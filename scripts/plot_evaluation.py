"""Evaluation pictures: reliability diagrams of one run, and metrics under shift for several.

  python scripts/plot_evaluation.py reliability --workdir=DIR [--set=test] [--out=PNG]
      [--temperature_scaling=ensemble|per_member] [--bins=15]
  python scripts/plot_evaluation.py shift RUN [RUN ...] [--out=PNG] [--label_by=method|dir]
      [--tempered] [--metrics=nll,accuracy,ece]

`reliability` reads `DIR/predictions/<set>.npz` and `validation.npz`: left the raw ensemble, right
the ensemble after temperature scaling fitted on validation (maths/temperature.py, the mode of
the run's config unless given); bars are the accuracy per confidence bin
(metrics.reliability_bins), the red part the gap to the diagonal, the panel below the number of
examples per bin.

`shift` (the paper's Fig. 3) reads each run's metrics.json: x is the corruption severity, 0 the
clean test set, and one box per severity and run label shows the spread over corruption types
(results.metric_by_severity). RUNs are directories or glob patterns; runs with the same label
(e.g. the seeds of one method, `--label_by=method`) are pooled into one box.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from hyper_ensembles.evaluation import results as results_lib  # noqa: E402
from hyper_ensembles.maths import metrics as metrics_lib  # noqa: E402
from hyper_ensembles.maths import temperature  # noqa: E402
from hyper_ensembles.runs import workdir as workdir_lib  # noqa: E402

METRIC_LABELS = {'nll': 'NLL', 'accuracy': 'accuracy', 'ece': 'ECE', 'brier': 'Brier'}


def _save(fig, out: str) -> None:
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=120)
  plt.close(fig)
  print(f'wrote {out}')


def plot_reliability(workdir: str, eval_set: str, out: str, mode: str | None, num_bins: int
                     ) -> None:
  logits, labels = workdir_lib.read_predictions(workdir, eval_set)
  if mode is None:
    mode = results_lib.config_mode(workdir_lib.read_config(workdir)) or results_lib.DEFAULT_MODE
  temperatures = temperature.fit_temperatures(
      *workdir_lib.read_predictions(workdir, results_lib.FIT_SET), mode)
  panels = [('raw', logits), (f'temperature scaled ({mode}, T = '
                              f'{", ".join(f"{t:.2f}" for t in np.unique(temperatures))})',
                              temperature.apply_temperatures(logits, temperatures))]
  fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True,
                           gridspec_kw={'height_ratios': [3, 1]})
  for column, (title, z) in enumerate(panels):
    probs = metrics_lib.ensemble_probs(z)
    bins = metrics_lib.reliability_bins(probs, labels, num_bins)
    centres = (bins['edges'][:-1] + bins['edges'][1:]) / 2
    width = 1.0 / num_bins
    filled = bins['count'] > 0  # empty bins get no bars
    centres, acc, conf = centres[filled], bins['accuracy'][filled], bins['confidence'][filled]
    ax = axes[0][column]
    ax.bar(centres, acc, width=width, edgecolor='black', color='tab:blue', label='accuracy')
    ax.bar(centres, conf - acc, bottom=acc, width=width, color='tab:red', alpha=0.35,
           edgecolor='tab:red', label='gap to confidence')
    ax.plot([0, 1], [0, 1], 'k--', lw=1)
    nll = metrics_lib.nll(metrics_lib.ensemble_log_probs(z), labels)
    ax.set_title(f'{title}\nECE {bins["ece"]:.4f}   NLL {nll:.4f}', fontsize='medium')
    ax.set_ylabel('accuracy')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc='upper left', fontsize='small')
    axes[1][column].bar(centres, bins['count'][filled], width=width, color='grey',
                        edgecolor='black')
    axes[1][column].set_yscale('symlog')
    axes[1][column].set_xlabel('confidence (max p̄)')
    axes[1][column].set_ylabel('examples')
  fig.suptitle(f'{os.path.basename(os.path.normpath(workdir))}: {eval_set} '
               f'({len(labels)} examples, {logits.shape[0]} members)')
  _save(fig, out)


def _runs(patterns: list[str]) -> list[str]:
  runs = []
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) or [pattern]
    runs += [m for m in matches if os.path.exists(os.path.join(m, workdir_lib.METRICS_FILE))]
  if not runs:
    raise SystemExit(f'no runs with metrics.json among {patterns}')
  return runs


def plot_shift(runs: list[str], out: str, label_by: str, metric_keys: list[str], tempered: bool
               ) -> None:
  suffix = results_lib.SUFFIX if tempered else ''
  by_label: dict[str, list[dict]] = {}
  for run in runs:
    with open(os.path.join(run, workdir_lib.METRICS_FILE)) as f:
      metrics = json.load(f)
    if label_by == 'method':
      label = workdir_lib.read_json(os.path.join(run, workdir_lib.CONFIG_FILE))['method']
    else:
      label = os.path.basename(os.path.normpath(run))
    by_label.setdefault(label, []).append(metrics)
  labels = list(by_label)
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  fig, axes = plt.subplots(1, len(metric_keys), figsize=(5 * len(metric_keys), 4), squeeze=False)
  for ax, key in zip(axes[0], metric_keys):
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
      pooled: dict[int, list[float]] = {}
      for metrics in by_label[label]:
        for severity, values in results_lib.metric_by_severity(metrics, key, suffix).items():
          pooled.setdefault(severity, []).extend(values)
      if not pooled:
        continue
      severities = sorted(pooled)
      positions = [s - 0.4 + width * (i + 0.5) for s in severities]
      colour = colours[i % len(colours)]
      ax.boxplot([pooled[s] for s in severities], positions=positions, widths=width * 0.9,
                 patch_artist=True, showfliers=False,
                 boxprops={'facecolor': colour, 'alpha': 0.6}, medianprops={'color': 'black'})
      ax.plot([], [], color=colour, lw=6, alpha=0.6, label=f'{label} ({len(by_label[label])})')
    ax.set_xticks(range(6), ['test', '1', '2', '3', '4', '5'])
    ax.set_xlim(-0.6, 5.6)
    ax.set_xlabel('corruption severity')
    ax.set_ylabel(METRIC_LABELS.get(key, key) + (' (temperature scaled)' if tempered else ''))
    ax.grid(alpha=0.3, axis='y')
  axes[0][0].legend(fontsize='small')
  _save(fig, out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  rel = sub.add_parser('reliability', help='reliability diagrams of one run, raw and tempered')
  rel.add_argument('--workdir', required=True)
  rel.add_argument('--set', default='test')
  rel.add_argument('--out', help='PNG path (default: DIR/reliability_<set>.png)')
  rel.add_argument('--temperature_scaling', choices=temperature.MODES)
  rel.add_argument('--bins', type=int, default=15)
  shift = sub.add_parser('shift', help='NLL / accuracy / ECE per corruption severity')
  shift.add_argument('runs', nargs='+')
  shift.add_argument('--out', default='shift.png')
  shift.add_argument('--label_by', choices=('method', 'dir'), default='method')
  shift.add_argument('--metrics', default='nll,accuracy,ece')
  shift.add_argument('--tempered', action='store_true')
  args = parser.parse_args(argv)
  if args.command == 'reliability':
    out = args.out or os.path.join(args.workdir, f'reliability_{args.set}.png')
    plot_reliability(args.workdir, args.set, out, args.temperature_scaling, args.bins)
  else:
    plot_shift(_runs(args.runs), args.out, args.label_by, args.metrics.split(','), args.tempered)
  return 0


if __name__ == '__main__':
  sys.exit(main())
