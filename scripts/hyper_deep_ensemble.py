"""Hyper-deep ensembles from one command (docs/design.md §5; stages in hyper_ensembles/hyper_deep/).

    python scripts/hyper_deep_ensemble.py \
        --config=configs/default.py:method=hyper_deep,dataset=fashion_mnist --workdir=DIR

Runs the random search (vectorised chunks), greedy selection, stratification, the optional
retraining of the chosen members on train + validation
(`--config.hyper_deep.retrain_on_train_plus_val=true`), the fixed-init and deep-ensemble baselines
and the final evaluation, writing DIR/metrics.json and DIR/selection.json.
A re-run skips finished stages and resumes unfinished runs from their checkpoints; `--until=pool`
stops after a stage. `python -m hyper_ensembles.main` with `method=hyper_deep` runs the same
pipeline; to spread the random search over machines, see scripts/sweep.py.

Each stage's runs can go in parallel on Ray instead of one after another in this process:

    python scripts/hyper_deep_ensemble.py --config=... --workdir=DIR --launcher=ray \
        [--max_concurrent=2] [--ray_address=auto --gpus_per_run=1]

(hyper_ensembles/launching/registry.py). The launcher is not part of the config: a DIR started with
one
launcher resumes with the other. A failed run is reported with its workdir and log after the
stage's other runs finish, and the pipeline stops there with status 1; re-running resumes it.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags
from ml_collections import config_flags

from hyper_ensembles import hyper_deep
from hyper_ensembles.launching import jobs, registry
from hyper_ensembles.reporting import study_tables
from hyper_ensembles.reporting import table as table_lib
from hyper_ensembles.runs import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config, e.g. configs/default.py:method=hyper_deep,arch=mlp',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'The pipeline directory DIR.')
_UNTIL = flags.DEFINE_enum('until', None, hyper_deep.STAGES, 'Stop after this stage.')
_LAUNCH = registry.define_flags()
flags.mark_flags_as_required(['config', 'workdir'])


def run() -> None:
  try:
    metrics = hyper_deep.run_pipeline(_CONFIG.value, _WORKDIR.value, until=_UNTIL.value,
                                      launcher=registry.options_from_flags(_LAUNCH))
  except jobs.RunsFailedError as e:
    sys.exit(str(e))
  if metrics:
    ensembles = study_tables.pipeline_ensembles(metrics)
    table, _ = study_tables.pipeline_table([ensembles], ensembles=[(k, k) for k in ensembles])
    print(table_lib.markdown(table))


if __name__ == '__main__':
  cli.run_app(run)
