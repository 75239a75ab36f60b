"""The paper's Table 1 protocol: MLP and LeNet on Fashion-MNIST, every method, K = 3.

    --config=configs/table1.py:arch=mlp,method=hyper_batch[,fast][,smoke]

Args (a comma list): `arch=` mlp | lenet (default mlp), `method=` single | deep | batch |
hyper_batch | stn | hyper_deep (default single), and the flags `fast` (κ = 10 instead of the
paper's 50 for the hyper-deep pipeline: a budget deviation, nothing else changes) and `smoke`
(the embedded digits at the smoke size of configs/default.py, so tests need no files). Any field can
then be overridden with `--config.<key>=<value>`. scripts/reproduce_table1.py trains every row.

Built on configs/default.py; every choice below was made on validation data only (never test);
the measurements behind them: docs/table1.md.
"""

from __future__ import annotations

import ml_collections

from configs import default

METHODS = ('single', 'deep', 'batch', 'hyper_batch', 'stn', 'hyper_deep')
ARCHS = ('mlp', 'lenet')
ARG_FLAGS = ('fast', 'smoke')
# Training length L = 2·e*, rounded up to 10 epochs, where e* is the centre of the lowest 5-epoch
# window of a single network's constant-LR validation NLL (MLP e* ≈ 16, LeNet e* ≈ 11; the rule:
# hyper_ensembles/reproduction/training_length.py, the curves: docs/table1.md): long enough that
# a single network has passed its validation minimum, the same length for every method so that
# rows differ only in the method.
NUM_EPOCHS = {'mlp': 40.0, 'lenet': 30.0}
# The paper's ranges for MLP / LeNet (appendix), log-uniform: L2 ν and dropout rate.
RANGES = {'l2': (1e-3, 1e3), 'dropout': (1e-3, 0.9)}
POOL_SIZE = 50  # κ of the paper's MLP / LeNet random search
FAST_POOL_SIZE = 10  # `fast`: a budget deviation from the paper (κ = 50), documented in the table
OOD_SETS = ('digits28', 'uniform_noise')  # offline: MNIST-like digits, and noise (docs/table1.md)
SMOKE_OOD_SETS = ('uniform_noise',)  # digits has no digits28 OOD set (it *is* digits)
STEPS_PER_EPOCH = 445  # 57 000 training images / 128 (the last 5 % of 60 000 are validation)
# e(λ) for hyper_batch: linear (E·λ̃). The paper's non-linear e(λ) (one tanh layer of 16 units)
# was tried first under this very protocol and lost on Fashion-MNIST validation NLL to the linear
# one (docs/table1.md, "e(λ)"); on the digits it had tied (docs/hyper_batch.md part 2).
EMBEDDING_HIDDEN = 0
TUNED_METHODS = ('hyper_batch', 'stn')  # the methods with a λ tuner
INIT = 'whole_range'  # their λ start (the paper's), kept on validation: see get_config


def parse_args(arg: str | None) -> dict:
  """'arch=lenet,method=batch,fast' → {'arch': 'lenet', 'method': 'batch', 'fast': True, ...}."""
  out = {'arch': 'mlp', 'method': 'single', 'fast': False, 'smoke': False}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = (part.strip() for part in item.partition('='))
    if not sep and key in ARG_FLAGS:
      out[key] = True
    elif sep and key in ('arch', 'method'):
      out[key] = value
    else:
      raise ValueError(f'Unknown config argument {item!r}; use arch=, method= and the flags '
                       f'{", ".join(ARG_FLAGS)}')
  if out['arch'] not in ARCHS:
    raise ValueError(f"Unknown arch {out['arch']!r}; choose one of: {', '.join(ARCHS)}")
  if out['method'] not in METHODS:
    raise ValueError(f"Unknown method {out['method']!r}; choose one of: {', '.join(METHODS)}")
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_args(arg)
  arch, method, smoke = args['arch'], args['method'], args['smoke']
  dataset = 'digits' if smoke else 'fashion_mnist'
  # default.py gives Fashion-MNIST's batch 128, Adam 1e-3, L2 ν = 10 and dropout 0.05 (the fixed
  # setting of single / deep / batch and the hyper-deep default setting), and the smoke sizes.
  config = default.get_config(
      f'method={method},arch={arch},dataset={dataset}' + (',smoke' if smoke else ''))
  config.unlock()
  config.num_members = 3  # K = 3 for every ensemble of the paper's MLP / LeNet table

  # Offline data: the Debian IDX files (no TFDS download); validation = the last 5 % of train.
  config.data.source = 'default' if smoke else 'idx'
  # Shift: the MNIST-C corruption types implemented here ('official'), severities 1-5; OOD: sets
  # that need no download. Both only add evaluation sets, never change training.
  config.data.corruptions = 'official'
  config.data.ood_datasets = SMOKE_OOD_SETS if smoke else OOD_SETS
  if smoke:
    config.data.corruption_severities = (3,)  # one severity: the shifted columns, in seconds

  if not smoke:
    config.num_epochs = NUM_EPOCHS[arch]
    # Validate every 5 epochs (the final numbers are computed at the end in any case) and
    # checkpoint every 2: a resumed run loses at most 2 epochs.
    config.eval_every_steps = 5 * STEPS_PER_EPOCH
    config.checkpoint_every_steps = 2 * STEPS_PER_EPOCH
  # × 0.2 at half and three quarters of the run (default.py's schedule), every method alike.
  config.optimizer.decay_fractions = (0.5, 0.75)
  config.optimizer.decay_epochs = ()

  # Hyper-batch / stn: the paper's ranges for the tuned L2 and dropout.
  config.hyper.space = ml_collections.ConfigDict(dict(RANGES))
  if method in TUNED_METHODS:
    # λ init: the paper's whole range. Both starts were run under this protocol (MLP hyper-batch,
    # seeds 0, 1, 2): validation NLL 0.2742 ± 0.0011 (whole range) vs 0.2742 ± 0.0026
    # (log-centred), paired difference −0.0000 ± 0.0037, so validation does not contradict the
    # paper (docs/table1.md). The other methods keep default.py's value, which they never read.
    config.hyper.init = INIT
  if method == 'hyper_batch':
    config.hyper.embedding_hidden = EMBEDDING_HIDDEN  # linear e(λ), chosen on validation; above
  # stn keeps its linear e(λ) (the STN construction); only the init and ranges are shared.

  # Hyper-deep: random search over the same ranges (the paper's), κ = 50 settings (10 when fast);
  # stratification, the fixed-init and deep baselines on (they are rows of the table); no
  # retraining on train ∪ validation, so every row trains on the same data.
  hd = config.hyper_deep
  hd.search_space = ml_collections.ConfigDict(dict(RANGES))
  hd.ensemble_size = 3
  if not smoke:
    # `fast` touches the pipeline only, so the ordinary runs of both sizes share their workdirs.
    hd.pool_size = FAST_POOL_SIZE if args['fast'] and method == 'hyper_deep' else POOL_SIZE
    hd.chunk_size = 25  # 25 vectorised MLP / LeNet members fit easily; a resume point mid-pool
  hd.stratify = True
  hd.fixed_init_baseline = True
  hd.deep_baseline = True
  hd.retrain_on_train_plus_val = False
  return config.lock()
