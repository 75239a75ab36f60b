"""Command-line entry point: `python -m hyper_ensembles.main --config=... --workdir=DIR`.

Parses flags, optionally joins a multi-host cluster, and hands over to
`train.train_and_evaluate(config, workdir)` — or, for `method=hyper_deep`, to the hyper-deep
pipeline `hyper_deep.run_pipeline(config, workdir)`, which trains its runs the same way.
"""

from __future__ import annotations

import os

# Before TensorFlow (used for event files / TFDS) is imported: hide its C++ start-up chatter.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from hyper_ensembles import train
from hyper_ensembles.runs import cli
from hyper_ensembles.training import config_check

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. configs/default.py:method=deep,arch=mlp',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Call jax.distributed.initialize() (auto-detected on TPU pods / SLURM; '
    'elsewhere pass --coordinator_address, --num_processes and --process_id).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index.')
_TRACEBACK = flags.DEFINE_bool(
    'traceback', False, 'Show the full traceback for input errors and diverged runs too.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  cli.setup_logging()
  if _MULTIHOST.value:
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value, initialization_timeout=300)
  logging.info('JAX %s: process %d of %d, %d local / %d global devices', jax.__version__,
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())

  def run():
    # The whole resolved config, before anything runs or is written (training/config_check.py).
    config_check.check(_CONFIG.value)
    if _CONFIG.value.method == 'hyper_deep':
      # A pipeline of ordinary runs (random search, selection, stratification), not one run.
      from hyper_ensembles import hyper_deep
      hyper_deep.run_pipeline(_CONFIG.value, _WORKDIR.value)
    else:
      train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)

  cli.run_reporting_user_errors(run, _TRACEBACK.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
