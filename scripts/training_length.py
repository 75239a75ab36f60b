"""The training-length rule on single-network validation curves: prints each curve's lowest
5-epoch window, e* and L = 2·e* rounded up to 10 epochs (docs/table1.md).

  # from runs (validated once per epoch; only validation/* and the learning rate are read):
  python scripts/training_length.py --run=const=DIR [--run=NAME=DIR ...] --steps_per_epoch=445 \
      --arch=mlp --dataset=fashion_mnist [--out=curves.json --about="how they were made"]
  # from saved curves (docs/table1_validation_curves.json, docs/demo_validation_curves.json):
  python scripts/training_length.py --curves=FILE [--arch=mlp] [--dataset=digits]

The rule and the curve format: hyper_ensembles/reproduction/training_length.py.
"""

from __future__ import annotations

import argparse

from hyper_ensembles.reproduction import training_length
from hyper_ensembles.runs import cli


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--run', action='append', metavar='NAME=DIR',
                      help='a single-network run directory, validated every epoch (repeatable)')
  source.add_argument('--curves', help='a saved curves JSON file')
  parser.add_argument('--steps_per_epoch', type=int, help='train steps per epoch (with --run)')
  parser.add_argument('--arch', help='the runs\' arch (with --run), or a filter (with --curves)')
  parser.add_argument('--dataset', help='the runs\' dataset, or a filter (with --curves)')
  parser.add_argument('--out', help='write the curves read with --run to this JSON file')
  parser.add_argument('--about', default='', help='the "_about" text saved with --out')
  cli.add_traceback_argument(parser)
  args = parser.parse_args(argv)
  if args.run and not (args.steps_per_epoch and args.arch and args.dataset):
    parser.error('--run needs --steps_per_epoch, --arch and --dataset')
  if args.out and not args.run:
    parser.error('--out writes the curves read with --run')

  def run() -> None:
    if args.curves:
      curves = training_length.load_curves(args.curves, arch=args.arch, dataset=args.dataset)
      if not curves:
        raise ValueError(f'no curve in {args.curves} matches arch={args.arch}, '
                         f'dataset={args.dataset}')
    else:
      curves = {}
      for item in args.run:
        name, sep, workdir = item.partition('=')
        if not sep or not name or not workdir:
          raise ValueError(f'--run={item!r}: expected NAME=DIR')
        curves[name] = training_length.read_curve(workdir, args.steps_per_epoch, args.arch,
                                                  args.dataset)
    for line in training_length.describe(curves):
      print(line)
    if args.out:
      training_length.save_curves(args.out, curves, args.about)
      print(f'wrote {args.out}')

  cli.run_reporting_user_errors(run, args.traceback)


if __name__ == '__main__':
  main()
