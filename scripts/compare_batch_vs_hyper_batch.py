"""Batch vs hyper-batch ensembles (with stn and single) on Fashion-MNIST MLP / LeNet, several seeds.

    python scripts/compare_batch_vs_hyper_batch.py --workdir=workdirs/compare_batch \
        [--archs=mlp,lenet] [--seeds=0,1,2] [--epochs=8] [--lenet_epochs=4] \
        [--methods=single,batch,hyper_batch,stn] [--dataset=fashion_mnist] [--hyper_init=...]

Every (arch, method, seed) is an ordinary run of
`configs/default.py:method=<m>,arch=<a>,dataset=<d>` in `<workdir>/<arch>/<method>_seed<s>` with
`config.seed = s` and the same epochs, batch size, optimiser and learning-rate schedule (decays at
50 % and 75 % of the epochs) for every method. Each method keeps its config defaults otherwise:
single / batch their fixed `config.hparams` (on Fashion-MNIST L2 ν = 10, dropout 0.05), hyper-batch
and stn the tuned space and tuner of `config.hyper` (L2 in [1e-3, 1e3], dropout in [1e-3, 0.9],
log-centred initialisation, τ = 1e-3, Adam 1e-3 one tune step after every 3 train steps on the 5 %
validation split; docs/hyper_batch.md says why). `--hyper_init` overrides the initialisation.
Validation metrics are evaluated once per epoch (TensorBoard), checkpoints only at the end.

Output: `<workdir>/results.{md,json}` with mean ± standard error over seeds of validation NLL and
test NLL, accuracy and ECE (15 bins) and the parameter count, per arch; and
`<workdir>/<arch>/hyperparameters_<method>_seed<s>.png`, the λ trajectories (support and mean per
member) of every hyper-batch / stn run. Runs already finished in the workdir are read back, not
retrained. A persistent XLA compilation cache under the workdir lets every seed after the first
reuse the compiled programs.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax
from absl import flags, logging

from configs import default
from hyper_ensembles import train
from hyper_ensembles.data.registry import load_dataset
from hyper_ensembles.methods.hyper_batch import INITS
from hyper_ensembles.reporting import hyperparameter_plots, study_tables
from hyper_ensembles.reporting import table as table_lib
from hyper_ensembles.runs import cli
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.runs.overrides import apply_overrides, parse_override

_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/compare_batch_vs_hyper_batch', 'Output dir.')
_ARCHS = flags.DEFINE_list('archs', ['mlp', 'lenet'], 'Architectures.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (config.seed) of the runs.')
_EPOCHS = flags.DEFINE_float('epochs', 8.0, 'Training epochs of every MLP run.')
_LENET_EPOCHS = flags.DEFINE_float('lenet_epochs', 4.0, 'Training epochs of every LeNet run.')
_METHODS = flags.DEFINE_list('methods', ['single', 'batch', 'hyper_batch', 'stn'],
                             'Methods to compare.')
_DATASET = flags.DEFINE_string('dataset', 'fashion_mnist', 'Dataset.')
_NUM_MEMBERS = flags.DEFINE_integer('num_members', 3, 'M.')
_OVERRIDES = flags.DEFINE_multi_string(
    'set', [], "Extra config overrides 'key=value' for every run, e.g. "
    "--set=data.corruptions=official --set=data.ood_datasets=digits28,uniform_noise.")
_HYPER_INIT = flags.DEFINE_enum('hyper_init', None, list(INITS),
                                'config.hyper.init of the hyper-batch / stn runs (default: the '
                                "config's).")

METRICS = ('nll', 'accuracy', 'ece')
HYPER_METHODS = ('hyper_batch', 'stn')


def run_config(arch: str, method: str, seed: int, steps_per_epoch: int | None = None):
  config = default.get_config(f'method={method},arch={arch},dataset={_DATASET.value}')
  config.seed = seed
  config.num_members = _NUM_MEMBERS.value
  config.num_epochs = _LENET_EPOCHS.value if arch == 'lenet' else _EPOCHS.value
  # Validation NLL once per epoch: the learning curve next to the λ trajectories.
  config.eval_every_steps = steps_per_epoch or 0
  config.checkpoint_every_steps = 10**9  # only the final checkpoint
  if method in HYPER_METHODS and _HYPER_INIT.value:
    config.hyper.init = _HYPER_INIT.value
  return apply_overrides(config, dict(parse_override(item) for item in _OVERRIDES.value))


def epoch_steps(config) -> int:
  from hyper_ensembles.data.streams import steps_per_epoch
  # Only the training split's size matters here: leave out the shifted / OOD sets a --set may
  # have switched on (generating them takes most of the load).
  data = apply_overrides(config, {'data.corruptions': '', 'data.ood_datasets': ()}).data
  return steps_per_epoch(load_dataset(config.dataset, data).num_train, config.batch_size)


def plot_trajectories(run_dir: str, out: str, title: str) -> None:
  trajectories = hyperparameter_plots.read_trajectories(run_dir)
  if trajectories:
    hyperparameter_plots.plot(trajectories, out, title=title)


def run_comparison() -> None:
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  # Seeds change only runtime inputs, so every seed after the first hits this cache.
  jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  results: dict = {}
  start = time.time()
  for arch in _ARCHS.value:
    results[arch] = {}
    steps = epoch_steps(run_config(arch, _METHODS.value[0], 0))
    for method in _METHODS.value:
      results[arch][method] = {}
      for seed in map(int, _SEEDS.value):
        run_dir = os.path.join(workdir, arch, f'{method}_seed{seed}')
        t0 = time.time()
        metrics = train.train_and_evaluate(run_config(arch, method, seed, steps), run_dir)
        results[arch][method][seed] = {
            'test': {k: metrics['test'][k] for k in METRICS},
            'validation': {k: metrics['validation'][k] for k in METRICS},
            'num_params': metrics['num_params'], 'train_seconds': metrics['train_seconds']}
        logging.info('%s %s seed %d: val nll %.4f, test nll %.4f acc %.4f ece %.4f (%.0f s)',
                     arch, method, seed, metrics['validation']['nll'], metrics['test']['nll'],
                     metrics['test']['accuracy'], metrics['test']['ece'], time.time() - t0)
        if method in HYPER_METHODS:
          plot_trajectories(run_dir, os.path.join(workdir, arch, f'hyperparameters_{method}_seed'
                                                  f'{seed}.png'), f'{arch} {method} seed {seed}')
  summary = {
      'command': ' '.join(sys.argv),
      'dataset': _DATASET.value, 'archs': _ARCHS.value, 'num_members': _NUM_MEMBERS.value,
      'epochs': {'mlp': _EPOCHS.value, 'lenet': _LENET_EPOCHS.value},
      'hyper_init': _HYPER_INIT.value or 'config default',
      'seeds': [int(s) for s in _SEEDS.value],
      'wall_seconds': time.time() - start,
      'runs': results,
  }
  text = table_lib.markdown(study_tables.comparison_table(results))
  workdir_lib.write_json(os.path.join(workdir, 'results.json'), summary)
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(f'{_DATASET.value}, M = {_NUM_MEMBERS.value}, MLP {_EPOCHS.value:g} epochs, LeNet '
            f'{_LENET_EPOCHS.value:g} epochs, seeds {",".join(_SEEDS.value)}; mean ± standard '
            f'error over seeds.\n\n{text}\n')
  print(text)
  print(f'wrote {workdir}/results.md and results.json ({time.time() - start:.0f} s)')


if __name__ == '__main__':
  cli.run_app(run_comparison)
