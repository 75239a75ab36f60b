"""The main job on the embedded digits: every method side by side, as one results table.

    python scripts/demo.py --workdir=workdirs/demo [--arch=mlp] [--methods=single,deep,batch]

Each method trains in its own workdir (`<workdir>/<method>`) with `configs/default.py`, so a re-run
skips finished methods and resumes interrupted ones. The table is printed and written to
`<workdir>/results.md` and `<workdir>/results.json`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from absl import app, flags, logging

from configs import default as default_config
from hyper_ensembles import train
from hyper_ensembles import workdir as workdir_lib
from hyper_ensembles.methods.registry import METHODS

DEFAULT_METHODS = ('single', 'deep', 'batch', 'hyper_batch', 'stn', 'hyper_deep')

_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/demo', 'Where the runs and the table go.')
_ARCH = flags.DEFINE_string('arch', 'mlp', 'Architecture for every method.')
_DATASET = flags.DEFINE_string('dataset', 'digits', 'Dataset for every method.')
_METHODS = flags.DEFINE_list('methods', None, 'Methods to compare (default: all available).')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Seconds-long runs (for tests).')
_POOL_SIZE = flags.DEFINE_integer(
    'pool_size', 16, 'Random-search pool size κ of the hyper-deep row (the paper uses 50 for '
    'MLPs; 16 keeps the demo within a few minutes on 2 CPU cores).')


def run_method(method: str, workdir: str) -> dict:
  arg = f'method={method},arch={_ARCH.value},dataset={_DATASET.value}'
  if _SMOKE.value:
    arg += ',smoke'
  config = default_config.get_config(arg)
  if method == 'hyper_deep':
    from hyper_ensembles import hyper_deep
    if not _SMOKE.value:
      config.hyper_deep.pool_size = config.hyper_deep.chunk_size = _POOL_SIZE.value
    return hyper_deep.run_pipeline(config, workdir)
  return train.train_and_evaluate(config, workdir)


def format_table(rows: list[tuple[str, dict]]) -> str:
  header = ('| method | members | parameters | test NLL | test accuracy | test ECE | test Brier '
            '| train s |')
  lines = [header, '|' + '---|' * 8]
  for method, metrics in rows:
    test = metrics['test']
    lines.append(
        f'| {method} | {len(test["member_nll"])} | {metrics["num_params"]:,} | '
        f'{test["nll"]:.4f} | {test["accuracy"]:.4f} | {test["ece"]:.4f} | {test["brier"]:.4f} | '
        f'{metrics["train_seconds"]:.1f} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  available = [m for m in DEFAULT_METHODS
               if m in METHODS or (m == 'hyper_deep' and _has_pipeline())]
  methods = _METHODS.value or available
  rows = []
  for method in methods:
    print(f'== {method} ==', flush=True)
    rows.append((method, run_method(method, os.path.join(_WORKDIR.value, method))))
  table = format_table(rows)
  print(f'\n{_DATASET.value} / {_ARCH.value}, test set:\n{table}')
  with open(os.path.join(_WORKDIR.value, 'results.md'), 'w') as f:
    f.write(table + '\n')
  workdir_lib.write_json(os.path.join(_WORKDIR.value, 'results.json'), dict(rows))


def _has_pipeline() -> bool:
  try:
    from hyper_ensembles import hyper_deep  # noqa: F401
  except ImportError:
    return False
  return True


if __name__ == '__main__':
  app.run(main)
