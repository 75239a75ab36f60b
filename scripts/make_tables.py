"""Collects finished runs into the paper's result tables: mean ± standard error over seeds.

  python scripts/make_tables.py RUNS [RUNS ...] [--format=markdown|latex|both] [--out=PREFIX]
      [--reference=docs/reference_results.json] [--set=test] [--ood_score=max_prob|entropy]
      [--ignore_keys=seed,hyper_deep.sampling_seed,...] [--decimals=3] [--hyper_deep_baselines]
      [--json_out=FILE]

RUNS are run directories, glob patterns or root directories searched recursively for runs (a
directory with config.json and metrics.json). One table per (dataset, architecture), one row per
method and config; runs whose config.json agree on every key but `--ignore_keys` (default: the
seed and the hyper-deep search's seed) are the seeds of one row. Reference numbers
(docs/reference_results.json; its `_about` gives the sources) are printed as extra rows below ours.
The tables themselves: hyper_ensembles/reporting/results_tables.py.
"""

from __future__ import annotations

import argparse
import os

from hyper_ensembles.reporting import results_tables
from hyper_ensembles.runs import cli

DEFAULT_REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 'docs', 'reference_results.json')


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+', help='run directories, glob patterns or root directories')
  parser.add_argument('--format', choices=('markdown', 'latex', 'both'), default='markdown')
  parser.add_argument('--out', help='write PREFIX.md / PREFIX.tex instead of printing')
  parser.add_argument('--reference', default=DEFAULT_REFERENCE,
                      help='reference numbers JSON ("" for none)')
  parser.add_argument('--set', default='test', help='the clean evaluation set')
  parser.add_argument('--ood_score', choices=results_tables.OOD_SCORES, default='max_prob')
  parser.add_argument('--ignore_keys', default=','.join(results_tables.DEFAULT_IGNORE_KEYS),
                      help='comma list of config keys (dotted) that do not split rows')
  parser.add_argument('--decimals', type=int, default=3, help='decimals of NLL and ECE')
  parser.add_argument('--hyper_deep_baselines', action='store_true',
                      help="also a row for each baseline in a hyper-deep metrics.json")
  parser.add_argument('--json_out', help='also write the aggregated numbers as JSON')
  cli.add_traceback_argument(parser)
  args = parser.parse_args(argv)

  def run() -> None:
    written = results_tables.write_tables(
        args.runs, args.format, args.out, args.reference, args.set, args.ood_score,
        tuple(k.strip() for k in args.ignore_keys.split(',') if k.strip()), args.decimals,
        args.hyper_deep_baselines, args.json_out)
    for text in written:
      print(f'wrote {text}' if args.out else text)

  cli.run_reporting_user_errors(run, args.traceback)


if __name__ == '__main__':
  main()
