"""Evaluation pictures: reliability diagrams of one run, and metrics under shift for several.

  python scripts/plot_evaluation.py reliability --workdir=DIR [--set=test] [--out=PNG]
      [--temperature_scaling=ensemble|per_member] [--bins=15]
  python scripts/plot_evaluation.py shift RUN [RUN ...] [--out=PNG] [--label_by=method|dir]
      [--tempered] [--metrics=nll,accuracy,ece]

`reliability` reads `DIR/predictions/<set>.npz` and `validation.npz` and draws the raw and the
temperature-scaled ensemble. `shift` (the paper's Fig. 3) reads each run's metrics.json and draws
one box per corruption severity and run label; RUNs are directories or glob patterns, runs with the
same label (e.g. the seeds of one method, `--label_by=method`) are pooled into one box. The
pictures themselves: hyper_ensembles/reporting/evaluation_plots.py.
"""


from __future__ import annotations

import argparse
import os

from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.reporting import evaluation_plots
from hyper_ensembles.runs import cli


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  rel = sub.add_parser('reliability', help='reliability diagrams of one run, raw and tempered')
  rel.add_argument('--workdir', required=True)
  rel.add_argument('--set', default='test')
  rel.add_argument('--out', help='PNG path (default: DIR/reliability_<set>.png)')
  rel.add_argument('--temperature_scaling', choices=results_lib.MODES)
  rel.add_argument('--bins', type=int, default=15)
  shift = sub.add_parser('shift', help='NLL / accuracy / ECE per corruption severity')
  shift.add_argument('runs', nargs='+')
  shift.add_argument('--out', default='shift.png')
  shift.add_argument('--label_by', choices=evaluation_plots.LABEL_BY, default='method')
  shift.add_argument('--metrics', default='nll,accuracy,ece')
  shift.add_argument('--tempered', action='store_true')
  for subparser in (rel, shift):
    cli.add_traceback_argument(subparser)
  args = parser.parse_args(argv)

  def run() -> None:
    if args.command == 'reliability':
      out = args.out or os.path.join(args.workdir, f'reliability_{args.set}.png')
      evaluation_plots.plot_reliability(args.workdir, args.set, out, args.temperature_scaling,
                                        args.bins)
    else:
      out = args.out
      evaluation_plots.plot_shift(evaluation_plots.find_runs(args.runs), out, args.label_by,
                                  args.metrics.split(','), args.tempered)
    print(f'wrote {out}')

  cli.run_reporting_user_errors(run, args.traceback)


if __name__ == '__main__':
  main()
