"""Wall-clock of a hyper-deep random-search pool: one vectorised program vs one run after another.

    python scripts/benchmark_pool.py [--pool_size=16] [--epochs=1] [--dataset=fashion_mnist] \
        [--out=results.json]

Trains the same κ MLP settings (the default one and κ − 1 random draws, the pipeline's own plan)
for a fixed number of epochs twice in this process: as one `deep` run whose members carry their
own hyperparameters (what hyper_deep.py does), and as κ separate runs of one member each (what a
sweep of independent jobs does on one machine). Both go through `train.train_and_evaluate`, so both
include what a user waits for: set-up, compilation, training, final evaluation on the validation
and test sets and checkpoints. Also printed: the training-loop seconds alone (`train_seconds` of
the runs). The target (/work/shared/PERFORMANCE.md) is ≥ 3× for κ = 16.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax
from absl import app, flags, logging

from configs import default
from hyper_ensembles import hyper_deep, train
from hyper_ensembles import workdir as workdir_lib

_POOL_SIZE = flags.DEFINE_integer('pool_size', 16, 'κ, the number of settings.')
_EPOCHS = flags.DEFINE_float('epochs', 1.0, 'Training epochs of every member.')
_DATASET = flags.DEFINE_string('dataset', 'fashion_mnist', 'Dataset (fashion_mnist or digits).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs go (default: a temporary dir).')
_OUT = flags.DEFINE_string('out', None, 'Optional JSON file for the numbers.')


def benchmark_config(dataset: str, pool_size: int, epochs: float):
  config = default.get_config(f'method=hyper_deep,arch=mlp,dataset={dataset}')
  config.num_epochs = epochs
  config.eval_every_steps = 0  # final evaluation only, the same for both ways
  config.checkpoint_every_steps = 10**9  # one checkpoint at the end, the same for both ways
  config.hyper_deep.pool_size = pool_size
  config.hyper_deep.fixed_init_baseline = False
  config.hyper_deep.deep_baseline = False
  return config


def time_runs(config, workdir: str, runs) -> tuple[float, float]:
  """(wall-clock seconds, summed training-loop seconds) to train `runs` one after another."""
  t0 = time.perf_counter()
  loop_seconds = 0.0
  for run in runs:
    metrics = train.train_and_evaluate(hyper_deep.run_config(config, run),
                                       os.path.join(workdir, run.workdir))
    loop_seconds += metrics['train_seconds']
  return time.perf_counter() - t0, loop_seconds


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  kappa = _POOL_SIZE.value
  config = benchmark_config(_DATASET.value, kappa, _EPOCHS.value)
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='benchmark_pool_')
  settings = hyper_deep.read_settings(config)
  pool_settings = hyper_deep.random_settings(config, settings)
  vectorised = hyper_deep.population_runs('vectorised', pool_settings, config.seed, kappa)
  sequential = hyper_deep.population_runs('sequential', pool_settings, config.seed, 1)
  print(f'{kappa} MLP settings {tuple(config.model.mlp.hidden)} on {_DATASET.value}, '
        f'{_EPOCHS.value:g} epoch(s), batch {config.batch_size}, {jax.device_count()} '
        f'{jax.devices()[0].platform} device(s); runs in {workdir}', flush=True)
  # Sequential first: the vectorised run then cannot profit from a warmer machine.
  seq_wall, seq_loop = time_runs(config, workdir, sequential)
  print(f'one after another: {seq_wall:8.1f} s wall  ({seq_loop:.1f} s in training loops)',
        flush=True)
  vec_wall, vec_loop = time_runs(config, workdir, vectorised)
  print(f'vectorised:        {vec_wall:8.1f} s wall  ({vec_loop:.1f} s in the training loop)')
  print(f'speed-up:          {seq_wall / vec_wall:8.2f}× wall-clock  '
        f'({seq_loop / vec_loop:.2f}× training loop only; target ≥ 3× wall-clock)')
  if _OUT.value:
    workdir_lib.write_json(_OUT.value, {
        'pool_size': kappa, 'epochs': _EPOCHS.value, 'dataset': _DATASET.value,
        'hidden': list(config.model.mlp.hidden), 'batch_size': config.batch_size,
        'sequential_wall_s': seq_wall, 'sequential_loop_s': seq_loop,
        'vectorised_wall_s': vec_wall, 'vectorised_loop_s': vec_loop,
        'speedup_wall': seq_wall / vec_wall, 'speedup_loop': seq_loop / vec_loop})


if __name__ == '__main__':
  app.run(main)
