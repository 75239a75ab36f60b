"""The paper's Table 1 on Fashion-MNIST, MLP and LeNet, every method, K = 3: one resumable command.

    python scripts/reproduce_table1.py --root=workdirs/table1 [--archs=mlp,lenet] [--seeds=0,1,2] \
        [--size=full|fast|smoke] [--rows=single,batch,...] [--launcher=local|ray] [--table_only]

Trains every run and hyper-deep pipeline the rows need (configs/table1.py; the order, layout and
seeds: hyper_ensembles/reproduction/table1.py), cheap rows first, skipping what has finished, and
writes `<results_dir>/table1_<arch>.md` and `.json` (with this command, the commit and the date)
after each group of runs. `--table_only` rebuilds the tables from whatever has finished.
Re-running the same command resumes. Protocol, budget and results: docs/table1.md.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags

from configs import table1 as table1_config
from hyper_ensembles.launching import jobs, registry
from hyper_ensembles.reproduction import table1
from hyper_ensembles.runs import cli

_ROOT = flags.DEFINE_string('root', 'workdirs/table1', 'Where the runs and pipelines go.')
_ARCHS = flags.DEFINE_list('archs', list(table1.ARCHS), 'Architectures: mlp, lenet.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Table seeds (mean ± s.e. over them).')
_SIZE = flags.DEFINE_enum('size', 'full', list(table1.SIZES),
                          "full: the paper's κ = 50; fast: κ = 10 (a budget deviation); smoke: "
                          'seconds-long runs on the embedded digits (tests).')
_ROWS = flags.DEFINE_list('rows', list(table1.ROW_KEYS), 'Rows to train (all by default).')
_RESULTS = flags.DEFINE_string('results_dir', 'results', 'Where table1_<arch>.md / .json go.')
_TABLE_ONLY = flags.DEFINE_bool('table_only', False, 'Train nothing; rebuild the tables.')
_LAUNCH = registry.define_flags()


def run() -> None:
  study = table1.Study(archs=_ARCHS.value, seeds=[int(s) for s in _SEEDS.value],
                       root=_ROOT.value, size=_SIZE.value, rows=_ROWS.value)
  source = os.path.dirname(os.path.dirname(os.path.abspath(table1.__file__)))
  about = table1.provenance(['python', *sys.argv], source)
  try:
    progress = table1.reproduce(study, table1_config.get_config, _RESULTS.value, about,
                                registry.options_from_flags(_LAUNCH), _TABLE_ONLY.value)
  except jobs.RunsFailedError as e:
    sys.exit(str(e))
  print(table1.summary_line(progress), flush=True)


if __name__ == '__main__':
  # Quiet: the progress lines (one per run started and finished) are printed, not logged.
  cli.run_app(run, quiet=True)
