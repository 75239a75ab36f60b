"""Plots the λ-distribution trajectories of a hyper-batch (or stn) run.

  python scripts/plot_hyperparameters.py --workdir=DIR [--out=DIR/hyperparameters.png]
      [--json_out=FILE]   # also save the trajectories as JSON
  python scripts/plot_hyperparameters.py --trajectory=FILE --out=PNG   # from a saved JSON

Reads the `hyper/<name>/member_<k>/{lower,upper,mean}` scalars out of the workdir's TensorBoard
event files and draws one panel per tuned hyperparameter: per member its support [a, b] as a band
and its mean as a line. The reading, the drawing and the JSON trajectory format:
hyper_ensembles/reporting/hyperparameter_plots.py.
"""


from __future__ import annotations

import argparse
import json
import os

from hyper_ensembles.reporting import hyperparameter_plots
from hyper_ensembles.runs import cli, workdir


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='run directory holding the TensorBoard event files')
  source.add_argument('--trajectory', help='a JSON trajectory file (see the module docstring)')
  parser.add_argument('--out', help='PNG path (default: <workdir>/hyperparameters.png)')
  parser.add_argument('--json_out', help='also write the trajectories to this JSON file')
  cli.add_traceback_argument(parser)
  args = parser.parse_args(argv)
  if args.trajectory and not args.out:
    parser.error('--out is required with --trajectory')

  def run() -> None:
    if args.workdir:
      trajectories = hyperparameter_plots.read_trajectories(args.workdir)
      out = args.out or os.path.join(args.workdir, 'hyperparameters.png')
      title = os.path.basename(os.path.normpath(args.workdir))
    else:
      trajectories, out, title = workdir.read_json(args.trajectory), args.out, None
    if args.json_out:
      with open(args.json_out, 'w') as f:
        json.dump(trajectories, f, indent=1)
    hyperparameter_plots.plot(trajectories, out, title)
    print(f'wrote {out}')

  cli.run_reporting_user_errors(run, args.traceback)


if __name__ == '__main__':
  main()
