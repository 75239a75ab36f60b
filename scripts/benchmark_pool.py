"""Wall-clock of a hyper-deep random-search pool: vectorised vs on Ray vs one after another.

    python scripts/benchmark_pool.py [--pool_size=16] [--epochs=1] [--dataset=fashion_mnist] \
        [--ray_concurrent=2] [--ways=sequential,ray,vectorised] [--out=results.json]

Trains the same κ MLP settings (the default one and κ − 1 random draws, the pipeline's own plan)
for a fixed number of epochs three ways: as one `deep` run whose members carry their own
hyperparameters (what the hyper_deep pipeline does with chunk_size κ), as κ separate runs of one
member each one after another in this process (the local launcher: a sweep of independent jobs on
one machine), and as the same κ runs on a Ray started here, `--ray_concurrent` at a time, each a
subprocess pinned to its share of the cores (the Ray launcher; its time includes starting Ray and
each subprocess's imports). All go through `train.train_and_evaluate`, so all include what a user
waits for: set-up, compilation, training, final evaluation on the validation and test sets and
checkpoints. Also printed: the training-loop seconds alone (`train_seconds` of the runs). The
target (/work/shared/PERFORMANCE.md) is ≥ 3× for κ = 16, vectorised over sequential.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax
from absl import flags

from configs import default
from hyper_ensembles import hyper_deep, train
from hyper_ensembles.launching import jobs as jobs_lib
from hyper_ensembles.launching import registry
from hyper_ensembles.runs import cli
from hyper_ensembles.runs import workdir as workdir_lib

_POOL_SIZE = flags.DEFINE_integer('pool_size', 16, 'κ, the number of settings.')
_EPOCHS = flags.DEFINE_float('epochs', 1.0, 'Training epochs of every member.')
_DATASET = flags.DEFINE_string('dataset', 'fashion_mnist', 'Dataset (fashion_mnist or digits).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs go (default: a temporary dir).')
_OUT = flags.DEFINE_string('out', None, 'Optional JSON file for the numbers.')
_RAY_CONCURRENT = flags.DEFINE_integer('ray_concurrent', 2, 'Runs at a time on the local Ray.')
_WAYS = flags.DEFINE_multi_enum('ways', ['sequential', 'ray', 'vectorised'],
                                ['sequential', 'ray', 'vectorised'], 'Which ways to time.')


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


def time_ray(config, workdir: str, runs, concurrent: int) -> tuple[float, float]:
  """(wall-clock seconds, summed training-loop seconds) to train `runs` on a Ray started here."""
  t0 = time.perf_counter()
  jobs = [jobs_lib.Job(name=run.workdir, workdir=os.path.join(workdir, run.workdir),
                         config=hyper_deep.run_config(config, run)) for run in runs]
  options = jobs_lib.LaunchOptions(launcher='ray', max_concurrent=concurrent)
  with registry.create(options, echo=lambda message: None) as launcher:
    outcomes = launcher.run(jobs)
  return time.perf_counter() - t0, sum(o.metrics['train_seconds'] for o in outcomes)


def benchmark() -> None:
  kappa = _POOL_SIZE.value
  config = benchmark_config(_DATASET.value, kappa, _EPOCHS.value)
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='benchmark_pool_')
  settings = hyper_deep.read_settings(config)
  pool_settings = hyper_deep.random_settings(config, settings)
  runs = {way: hyper_deep.population_runs(way, pool_settings, config.seed,
                                          kappa if way == 'vectorised' else 1)
          for way in ('sequential', 'ray', 'vectorised')}
  print(f'{kappa} MLP settings {tuple(config.model.mlp.hidden)} on {_DATASET.value}, '
        f'{_EPOCHS.value:g} epoch(s), batch {config.batch_size}, {jax.device_count()} '
        f'{jax.devices()[0].platform} device(s), {os.cpu_count()} CPUs; runs in '
        f'{workdir}', flush=True)
  labels = {'sequential': 'one after another', 'ray': f'Ray, {_RAY_CONCURRENT.value} at a time',
            'vectorised': 'vectorised'}
  numbers = {'pool_size': kappa, 'epochs': _EPOCHS.value, 'dataset': _DATASET.value,
             'hidden': list(config.model.mlp.hidden), 'batch_size': config.batch_size,
             'ray_concurrent': _RAY_CONCURRENT.value}
  # Sequential first: the vectorised run then cannot profit from a warmer machine.
  for way in ('sequential', 'ray', 'vectorised'):
    if way not in _WAYS.value:
      continue
    if way == 'ray':
      wall, loop = time_ray(config, workdir, runs[way], _RAY_CONCURRENT.value)
    else:
      wall, loop = time_runs(config, workdir, runs[way])
    numbers[f'{way}_wall_s'], numbers[f'{way}_loop_s'] = wall, loop
    print(f'{labels[way]:<22} {wall:8.1f} s wall  ({loop:.1f} s in training loops)', flush=True)
  for fast, slow in [('vectorised', 'sequential'), ('ray', 'sequential'), ('vectorised', 'ray')]:
    if f'{fast}_wall_s' in numbers and f'{slow}_wall_s' in numbers:
      ratio = numbers[f'{slow}_wall_s'] / numbers[f'{fast}_wall_s']
      numbers[f'speedup_{fast}_over_{slow}'] = ratio
      print(f'{fast} over {slow}: {ratio:.2f}× wall-clock')
  if _OUT.value:
    workdir_lib.write_json(_OUT.value, numbers)


if __name__ == '__main__':
  cli.run_app(benchmark, quiet=True)
