"""Deep ensemble vs hyper ensemble vs hyper-deep ensemble: Fashion-MNIST MLP, K = 3, several seeds.

    python scripts/compare_deep_vs_hyper_deep.py --workdir=workdirs/compare \
        [--seeds=0,1,2] [--pool_size=10] [--epochs=3] [--ensemble_size=3] [--fixed_init]

For every seed s the whole hyper-deep pipeline (hyper_ensembles/hyper_deep/) runs in
`<workdir>/seed_<s>` with `config.seed = 1000·s` (so no two seeds share a network's seed) and
`hyper_deep.sampling_seed = s`. Its metrics.json holds all three ensembles, built from the same
networks where they overlap: the deep ensemble of the default setting (K inits), the hyper ensemble
(greedy selection over the κ-setting random search) and the hyper-deep ensemble (selection again
after stratification), plus the best single model of the search. The table gives mean ± standard
error over seeds of test NLL, accuracy and ECE, and is written to `<workdir>/results.{md,json}`.
A re-run skips what is done. The defaults are sized to finish in about 15 minutes on 2 CPU cores;
the paper's MLP runs use κ = 50 and longer training.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags

from configs import default
from hyper_ensembles import hyper_deep
from hyper_ensembles.reporting import study_tables
from hyper_ensembles.reporting import table as table_lib
from hyper_ensembles.runs import cli
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.runs.overrides import apply_overrides, parse_override

_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/compare_deep_vs_hyper_deep', 'Output dir.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Experiment seeds.')
_POOL_SIZE = flags.DEFINE_integer('pool_size', 10, 'κ, settings in the random search.')
_EPOCHS = flags.DEFINE_float('epochs', 3.0, 'Training epochs of every network.')
_ENSEMBLE_SIZE = flags.DEFINE_integer('ensemble_size', 3, 'K.')
_DATASET = flags.DEFINE_string('dataset', 'fashion_mnist', 'Dataset.')
_FIXED_INIT = flags.DEFINE_bool('fixed_init', False, 'Also the fixed-init hyper ensemble.')
_OVERRIDES = flags.DEFINE_multi_string(
    'set', [], "Extra config overrides 'key=value' for every network, e.g. "
    "--set=data.corruptions=official --set=data.ood_datasets=digits28,uniform_noise.")


def seed_config(seed: int):
  config = default.get_config(f'method=hyper_deep,arch=mlp,dataset={_DATASET.value}')
  config.seed = 1000 * seed
  config.num_members = _ENSEMBLE_SIZE.value
  config.num_epochs = _EPOCHS.value
  config.hyper_deep.pool_size = _POOL_SIZE.value
  config.hyper_deep.chunk_size = _POOL_SIZE.value
  config.hyper_deep.sampling_seed = seed
  config.hyper_deep.fixed_init_baseline = _FIXED_INIT.value
  config.hyper_deep.deep_baseline = True
  return apply_overrides(config, dict(parse_override(item) for item in _OVERRIDES.value))


def run_comparison() -> None:
  t0 = time.time()
  per_seed = []
  for seed in map(int, _SEEDS.value):
    workdir = os.path.join(_WORKDIR.value, f'seed_{seed}')
    print(f'== seed {seed}: {workdir} ({time.time() - t0:.0f} s so far)', flush=True)
    metrics = hyper_deep.run_pipeline(seed_config(seed), workdir)
    per_seed.append(study_tables.pipeline_ensembles(metrics))
  table, summary = study_tables.pipeline_table(per_seed)
  table = table_lib.markdown(table)
  header = (f'{_DATASET.value} MLP, K = {_ENSEMBLE_SIZE.value}, κ = {_POOL_SIZE.value}, '
            f'{_EPOCHS.value:g} epochs, seeds {",".join(_SEEDS.value)}: mean ± s.e. over seeds')
  print(f'\n{header}\n{table}\n\ntotal {time.time() - t0:.0f} s')
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, 'results.md'), 'w') as f:
    f.write(f'{header}\n\n{table}\n')
  workdir_lib.write_json(os.path.join(_WORKDIR.value, 'results.json'), {
      'dataset': _DATASET.value, 'ensemble_size': _ENSEMBLE_SIZE.value,
      'pool_size': _POOL_SIZE.value, 'epochs': _EPOCHS.value, 'seeds': _SEEDS.value,
      'summary': summary, 'seconds': time.time() - t0})


if __name__ == '__main__':
  cli.run_app(run_comparison, quiet=True)
