"""ResNet-20 on CIFAR: `--config=configs/resnet20.py:method=batch,dataset=cifar10[,smoke]`.

Args (a comma list): `method=` single | deep | batch | hyper_batch | stn | hyper_deep (default
deep), `dataset=` cifar10 | cifar100 (default cifar10), and the flag `smoke` (a tiny ResNet — 1
block per stage, 4/8/8 filters — for a few steps: seconds on a CPU). Any field can then be
overridden with `--config.<key>=<value>`.

The architecture is the standard ResNet-20 of He et al. 2016 (3 stages × 3 basic blocks, 16 / 32 /
64 filters, 0.27 M parameters). The hyper-ensemble paper's "ResNet-20" notebook is a different
network (a width-1 Wide ResNet of depth 22); docs/design.md §6.

This file also holds `build_config`, the protocol shared with configs/wrn28_10.py (docs/design.md
§6,
the official uncertainty-baselines WRN-28-10 code): K = 4 members; 128 unique images per step
(global, whatever the number of devices); SGD with Nesterov momentum 0.9, learning rate
0.1 × batch / 128, a linear warm-up over the first epoch, × 0.2 at epochs 100, 200 and 225 of 250;
train on the first 95 % of the TFDS train split, the last 5 % is validation (tuning, selection).
The official code gives the deterministic and batch-ensemble baselines their own schedules (200
epochs decayed at 60/120/160, resp. 250 decayed at 80/160/180); we train every method with the same
schedule so that rows of one table differ only in the method.

L2 (ν·‖θ‖²/N, N = 47 500; layer groups in models/resnet20.py): the official Keras coefficient c
(penalty c·‖θ‖², on every kernel, bias and BN parameter) becomes ν = c·N —
single / deep / hyper-deep default setting: c = 2e-4 → ν = 9.5; batch ensemble: c = 3e-4 → 14.25.
Hyper-batch / stn (`config.hyper`, configs/default.py's HYPER_SPACES): the six layer groups tuned
in [0.1, 100], BN fixed at 15 (official `l2_batchnorm`), fast weights N(1, 0.75), τ = 1e-3, a tune
step after every 3 train steps on a validation batch of 128. Hyper-deep (`config.hyper_deep`, run
by main.py as a pipeline of single-model runs): the six groups log-uniform in [1e-2, 1e2] and label
smoothing in [1e-5, 0.2]; κ = 100 settings (the default one included), each its own run; K = 4.
"""

from __future__ import annotations

import ml_collections

from configs import default

METHODS = ('single', 'deep', 'batch', 'hyper_batch', 'stn', 'hyper_deep')
DATASETS = ('cifar10', 'cifar100')
NUM_TRAIN = 47_500  # 95 % of the 50 000 CIFAR training images
TUNED_L2 = ('l2_input_conv', 'l2_group_1', 'l2_group_2', 'l2_group_3', 'l2_dense_kernel',
            'l2_dense_bias')
BN_L2 = 'l2_bn'
# Official Keras L2 coefficients (deterministic.py, batchensemble.py) as ν = c·N.
OFFICIAL_L2 = {'single': 9.5, 'deep': 9.5, 'hyper_deep': 9.5,  # 2e-4 × 47 500
               'batch': 14.25}  # 3e-4 × 47 500
# Official hyperbatchensemble.py: l2_batchnorm = 15 (fixed). The tuned groups' values in
# config.hparams are unused by hyper_batch (λ comes from the tuned distributions).
HYPER_BATCH_BN_L2 = 15.0


def parse_args(arg: str | None) -> dict:
  """'method=batch,dataset=cifar100,smoke' → {'method': 'batch', 'dataset': 'cifar100', ...}."""
  out = {'method': 'deep', 'dataset': 'cifar10', 'smoke': False}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = (part.strip() for part in item.partition('='))
    if not sep and key == 'smoke':
      out['smoke'] = True
    elif sep and key in ('method', 'dataset'):
      out[key] = value
    else:
      raise ValueError(f'Unknown config argument {item!r}; use method=, dataset= and smoke')
  if out['method'] not in METHODS:
    raise ValueError(f"Unknown method {out['method']!r}; choose one of: {', '.join(METHODS)}")
  if out['dataset'] not in DATASETS:
    raise ValueError(f"Unknown dataset {out['dataset']!r}; choose one of: {', '.join(DATASETS)}")
  return out


def build_config(arg: str | None, arch: str, model_section: str,
                 model_fields: dict, smoke_model_fields: dict) -> ml_collections.ConfigDict:
  """The CIFAR protocol for `arch`, with `config.model.<model_section>` set to its size fields."""
  args = parse_args(arg)
  method, dataset, smoke = args['method'], args['dataset'], args['smoke']
  # default.py validates the names and adds the hyper-batch (`hyper`) and hyper-deep
  # (`hyper_deep`: κ = 100, the ResNet search space, one run per member) blocks for this arch.
  config = default.get_config(
      f'method={method},arch={arch},dataset={dataset}' + (',smoke' if smoke else ''))
  config.unlock()
  config.num_members = 4

  config.model[model_section] = ml_collections.ConfigDict(
      smoke_model_fields if smoke else model_fields)
  config.model.fast_weight_init = 'normal'
  # Official: random_sign_init = -0.75 (hyper-batch), -0.5 (batch) → N(1, 0.75) / N(1, 0.5).
  config.model.fast_weight_std = 0.75 if method in ('hyper_batch', 'stn') else 0.5

  nu = OFFICIAL_L2.get(method, HYPER_BATCH_BN_L2)
  config.hparams = ml_collections.ConfigDict(
      {**{name: nu for name in TUNED_L2}, BN_L2: nu, 'label_smoothing': 0.0})

  config.batch_size = 128
  config.eval_batch_size = 512
  config.num_epochs = 250.0
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.1 * config.batch_size / 128
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.warmup_epochs = 1.0
  config.optimizer.decay_epochs = (100.0, 200.0, 225.0)
  config.optimizer.decay_fractions = ()
  config.optimizer.decay_factor = 0.2
  config.optimizer.fast_weight_lr_multiplier = 0.5
  # 371 steps per epoch at batch 128: log often, validate every ~10 epochs, checkpoint every ~5.
  config.log_every_steps = 100
  config.eval_every_steps = 3710
  config.checkpoint_every_steps = 1855
  config.max_eval_examples = -1

  # CIFAR-10-C comes from TFDS; CIFAR-100-C needs the .npy release, so it is opt-in:
  # --config.data.corruptions=official --config.data.cifar100_c_dir=DIR.
  config.data.corruptions = 'official' if dataset == 'cifar10' else ''
  config.data.ood_datasets = ('svhn_cropped',)

  if smoke:
    config.batch_size = 16
    config.eval_batch_size = 32
    config.num_epochs = 1.0
    config.num_train_steps = 6
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.decay_epochs = ()
    config.log_every_steps = 3
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.max_eval_examples = 64
    config.data.corruptions = ''
    config.data.ood_datasets = ()
  # A tune step sees as many unique examples as a train step (official hyperbatchensemble.py).
  config.hyper.validation_batch_size = config.batch_size
  return config.lock()


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return build_config(arg, 'resnet20', 'resnet20',
                      {'widths': (16, 32, 64), 'blocks_per_stage': 3},
                      {'widths': (4, 8, 8), 'blocks_per_stage': 1})
