"""Default experiment config: `--config=configs/default.py:method=deep,arch=mlp,dataset=digits`.

Args (a comma list, all optional): `method=` (single, deep, batch, ...), `arch=` (mlp, lenet),
`dataset=` (digits, fashion_mnist, ...), and the flag `smoke`, which shrinks any config to a run of
a few seconds. Any field can then be overridden with `--config.<key>=<value>`; the config is locked,
so a mistyped key fails.

Conventions: durations in epochs (or `num_train_steps` > 0 to override), intervals in steps;
`batch_size` is the global number of unique examples per step, whatever the number of devices;
L2 coefficients ν enter the loss as ν·‖θ‖²/N_train (the official hyper-ensemble code's
convention), so the same search ranges mean the same thing across datasets.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

ARG_KEYS = ('method', 'arch', 'dataset')
ARG_FLAGS = ('smoke',)


def parse_args(arg: str | None) -> dict:
  """'method=deep,arch=mlp,smoke' → {'method': 'deep', 'arch': 'mlp', 'smoke': True}."""
  out = {'method': 'deep', 'arch': 'mlp', 'dataset': 'digits', 'smoke': False}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep and key in ARG_FLAGS:
      out[key] = True
    elif sep and key in ARG_KEYS:
      out[key] = value.strip()
    else:
      raise ValueError(
          f'Unknown config argument {item!r}; use {", ".join(k + "=" for k in ARG_KEYS)} and the '
          f'flag {", ".join(ARG_FLAGS)}')
  return out


def validate_names(method: str, arch: str, dataset: str) -> None:
  """Fails early, listing the valid choices, when a name is unknown."""
  from hyper_ensembles.data.registry import DATASETS
  from hyper_ensembles.methods.registry import get_method_class
  from hyper_ensembles.models.registry import get_architecture
  get_method_class(method)
  get_architecture(arch)
  if dataset not in DATASETS:
    raise ValueError(
        f'Unknown dataset {dataset!r}; choose one of: {", ".join(sorted(DATASETS))}')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_args(arg)
  validate_names(args['method'], args['arch'], args['dataset'])
  config = ml_collections.ConfigDict()
  config.method = args['method']
  config.arch = args['arch']
  config.dataset = args['dataset']
  config.seed = 0
  # The paper's MLP / LeNet experiments use K = 3 (appendix; DESIGN.md §6).
  config.num_members = 3

  config.data = ml_collections.ConfigDict()
  config.data.source = 'default'  # fashion_mnist: 'idx' (Debian files) or 'tfds'
  config.data.fashion_mnist_dir = '/usr/share/datasets/fashion-mnist'
  config.data.tfds_data_dir = config_dict.placeholder(str)
  config.data.validation_fraction = 0.05  # the last 5 % of the training split (DESIGN.md §6)
  config.data.split_seed = 0  # embedded digits only: its split is random but fixed

  config.model = ml_collections.ConfigDict()
  config.model.mlp = ml_collections.ConfigDict()
  # Two hidden layers of 200: the classic MLP of the batch-ensemble / PERFORMANCE.md workload.
  config.model.mlp.hidden = (200, 200)
  config.model.fast_weight_init = 'normal'  # batch-ensemble r, s: N(1, std) or 'random_sign'
  config.model.fast_weight_std = 0.5

  # Fixed hyperparameter values (every member); L2 as ν with penalty ν·‖θ‖²/N_train.
  config.hparams = ml_collections.ConfigDict()
  config.hparams.l2 = 1.0  # the geometric middle of the paper's MLP/LeNet range [1e-3, 1e3]
  config.hparams.dropout = 0.05
  config.hparams.label_smoothing = 0.0

  config.optimizer = ml_collections.ConfigDict()
  # Adam for the small models: robust across digits / Fashion-MNIST without per-method tuning.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.momentum = 0.9  # sgd only
  config.optimizer.nesterov = True  # sgd only
  config.optimizer.warmup_epochs = 0.0
  config.optimizer.decay_epochs = (0.5, 0.75)  # in epochs; set from num_epochs below
  config.optimizer.decay_factor = 0.2
  config.optimizer.fast_weight_lr_multiplier = 0.5  # official batch-ensemble value
  config.optimizer.grad_clip_norm = 0.0  # 0 = off

  config.batch_size = 64
  config.eval_batch_size = 512  # a multiple of 8: divides evenly over common device counts
  config.num_epochs = 40.0
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.log_every_steps = 100
  config.eval_every_steps = 500  # validation metrics during training; 0 = only at the end
  config.checkpoint_every_steps = 500
  config.max_checkpoints_to_keep = 2
  config.max_eval_examples = -1  # > 0 evaluates only the first examples of each set (smoke)

  if args['dataset'] == 'fashion_mnist':
    config.batch_size = 128
    config.num_epochs = 20.0
    config.hparams.l2 = 10.0
  config.optimizer.decay_epochs = tuple(f * config.num_epochs for f in (0.5, 0.75))

  if args['smoke']:
    config.model.mlp.hidden = (16, 16)
    config.batch_size = 32
    config.eval_batch_size = 64
    config.num_train_steps = 12
    config.log_every_steps = 4
    config.eval_every_steps = 6
    config.checkpoint_every_steps = 6
    config.max_eval_examples = 200
  return config.lock()
