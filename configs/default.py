"""Default experiment config: `--config=configs/default.py:method=deep,arch=mlp,dataset=digits`.

Args (a comma list, all optional): `method=` (single, deep, batch, ...), `arch=` (mlp, lenet),
`dataset=` (digits, fashion_mnist, ...), and the flag `smoke`, which shrinks any config to a run of
a few seconds. Any field can then be overridden with `--config.<key>=<value>`; the config is locked,
so a mistyped key fails.

Conventions: durations in epochs (or `num_train_steps` > 0 to override), intervals in steps;
`batch_size` is the global number of unique examples per step, whatever the number of devices;
L2 coefficients ν enter the loss as ν·‖θ‖²/N_train (the official hyper-ensemble code's
convention): the strength per weight is ν/N, so a range is stronger on small data (the top decade
of [1e-3, 1e3] is a dead zone on digits' 1 222 training images; README).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

ARG_KEYS = ('method', 'arch', 'dataset')
ARG_FLAGS = ('smoke',)
DIGITS_EPOCHS = 60  # the embedded digits, by the training-length rule (below, in get_config)

# Tuned hyperparameter spaces of hyper_batch / stn, {name: (λ_min, λ_max)} log-uniform, per arch.
# MLP / LeNet: the paper appendix's dropout and L2 ranges; ResNets: the official code's six L2
# groups in [0.1, 100], BatchNorm L2 fixed (docs/design.md §6). Hyperparameters not named here keep
# the
# fixed values of `config.hparams`.
HYPER_SPACES = {
    'mlp': {'dropout': (1e-3, 0.9), 'l2': (1e-3, 1e3)},
    'lenet': {'dropout': (1e-3, 0.9), 'l2': (1e-3, 1e3)},
    **{arch: {name: (0.1, 100.0) for name in (
        'l2_input_conv', 'l2_group_1', 'l2_group_2', 'l2_group_3', 'l2_dense_kernel',
        'l2_dense_bias')} for arch in ('resnet20', 'wrn28_10')},
}
# Methods that are pipelines of ordinary runs rather than registered `Method`s: main.py hands them
# to their own driver (hyper_deep: hyper_ensembles/hyper_deep/, docs/design.md §5).
PIPELINE_METHODS = ('hyper_deep',)
# Hyper-deep random-search spaces {name: (min, max)}, log-uniform. MLP / LeNet: the paper's
# appendix (dropout and L2 only; no label smoothing). ResNets: docs/design.md §6 (six L2 groups and
# label smoothing; BN L2 stays fixed).
_MLP_SEARCH_SPACE = {'l2': (1e-3, 1e3), 'dropout': (1e-3, 0.9)}
_RESNET_SEARCH_SPACE = {
    **{name: (1e-2, 1e2) for name in ('l2_input_conv', 'l2_group_1', 'l2_group_2', 'l2_group_3',
                                      'l2_dense_kernel', 'l2_dense_bias')},
    'label_smoothing': (1e-5, 0.2)}


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
  from hyper_ensembles.methods.registry import METHODS
  from hyper_ensembles.models.registry import get_architecture
  if method not in METHODS and method not in PIPELINE_METHODS:
    raise ValueError(f'Unknown method {method!r}; choose one of: '
                     f'{", ".join(sorted((*METHODS, *PIPELINE_METHODS)))}')
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
  # >= 0: every member's parameters start from the init that member 0 of a run seeded `init_seed`
  # gets, while dropout and data order stay per member (the fixed-init hyper ensemble); -1: off.
  config.init_seed = -1
  # The paper's MLP / LeNet experiments use K = 3 (appendix; docs/design.md §6).
  config.num_members = 3

  config.data = ml_collections.ConfigDict()
  config.data.source = 'default'  # fashion_mnist: 'idx' (Debian files) or 'tfds'
  config.data.fashion_mnist_dir = '/usr/share/datasets/fashion-mnist'
  config.data.tfds_data_dir = config_dict.placeholder(str)
  config.data.validation_fraction = 0.05  # the last 5 % of the training split (docs/design.md §6)
  config.data.split_seed = 0  # embedded digits only: its split is random but fixed
  # True: train on train ∪ validation (validation still evaluated, no longer held out)
  config.data.train_on_validation = False
  # Extra evaluation sets (data/registry.py), off by default: corrupted test sets ('', 'official',
  # 'all' or a comma list of types; CIFAR-10/100-C, generated for digits / fashion_mnist), their
  # severities, the CIFAR-100-C .npy directory, OOD sets (e.g. ('digits28', 'mnist') for
  # fashion_mnist, ('uniform_noise', 'blobs') for digits, ('svhn_cropped',) for CIFAR), MNIST's IDX
  # directory and the seed of the generated sets.
  config.data.corruptions = ''
  config.data.corruption_severities = (1, 2, 3, 4, 5)
  config.data.cifar100_c_dir = config_dict.placeholder(str)
  config.data.ood_datasets = ()
  config.data.mnist_dir = '/usr/share/datasets/mnist'
  config.data.generated_eval_seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.mlp = ml_collections.ConfigDict()
  # Two hidden layers of 200: the classic MLP of the batch-ensemble papers and the benchmark.
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
  config.optimizer.decay_epochs = ()  # absolute epochs (the CIFAR configs use these)
  config.optimizer.decay_fractions = (0.5, 0.75)  # of the run: follows num_epochs overrides
  config.optimizer.decay_factor = 0.2
  config.optimizer.fast_weight_lr_multiplier = 0.5  # official batch-ensemble value
  config.optimizer.grad_clip_norm = 0.0  # 0 = off

  # Hyper-batch ensembles and stn (methods/hyper_batch.py; docs/design.md §4). Official constants.
  config.hyper = ml_collections.ConfigDict()
  config.hyper.space = ml_collections.ConfigDict(HYPER_SPACES.get(args['arch'], {}))
  config.hyper.tau = 1e-3  # entropy weight in the tune loss
  config.hyper.entropy = 'lambda'  # entropy of λ (official) or of log λ ('log_lambda')
  config.hyper.tune_every_steps = 3  # one tune step after every 3 train steps
  config.hyper.tune_warmup_epochs = 0.0  # train steps before the first tune step, in epochs
  config.hyper.tune_learning_rate = 1e-3  # Adam on the λ-distribution bounds t
  # Initial λ distributions: 'narrow' (official ResNet code: [λ₀ − 0.2, λ₀ + 0.2] around the
  # range's arithmetic mean), 'whole_range' (paper appendix) or 'log_centred' (±5 % of the log
  # range around its log-space centre). MLP / LeNet: log_centred, because on [1e-3, 1e3] the
  # arithmetic mean is ν ≈ 72, a penalty the tuner cannot leave in a short run, and a whole-range
  # start predicts at that same mean (docs/hyper_batch.md); ResNets keep the official init.
  config.hyper.init = 'log_centred' if args['arch'] in ('mlp', 'lenet') else 'narrow'
  config.hyper.init_half_width = 0.05  # log_centred: half-width, as a fraction of the log range
  # log_centred: members' centres spread evenly over this fraction of the log range (0: all at
  # the centre)
  config.hyper.init_member_spread = 0.0
  config.hyper.embedding_std = 1e-4  # e(λ̃) = E·λ̃ with E ~ N(0, std²)
  # > 0: e(λ̃) = E·tanh(A·λ̃ + c) with this many hidden units (official `e_body_hidden_units`)
  config.hyper.embedding_hidden = 0
  config.hyper.tie_uv = True  # u, v = r, s (official ResNet runs)
  config.hyper.l2_with_fast_weights = False  # official ResNet runs: ‖W + Δ·e₁‖² without r, s
  config.hyper.eval_samples = 0  # extra λ samples per member at evaluation (0: the mean only)
  # Validation batch of a tune step; set to the train batch size below.
  config.hyper.validation_batch_size = 64

  config.batch_size = 64
  config.eval_batch_size = 512  # a multiple of 8: divides evenly over common device counts
  # The digits' length by the training-length rule on validation curves (L = 2·e*, rounded up to
  # 10; hyper_ensembles/reproduction/training_length.py): three constant-LR single-network curves
  # (docs/demo_validation_curves.json) have their lowest 5-epoch windows at epochs 30, 52, 85, so
  # e* = 30. Their validation NLL is flat within ±0.01 from epoch ~20 on (216 images: the
  # standard error of one NLL is ~0.04), so e* is weakly determined; docs/table1.md says more.
  config.num_epochs = float(DIGITS_EPOCHS)
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.log_every_steps = 100
  config.eval_every_steps = 500  # validation metrics during training; 0 = only at the end
  config.checkpoint_every_steps = 500
  config.max_checkpoints_to_keep = 2
  config.max_eval_examples = -1  # > 0 evaluates only the first examples of each set (smoke)
  config.evaluation = ml_collections.ConfigDict()
  # Post-hoc temperature scaling fitted on validation predictions
  # (hyper_ensembles/maths/temperature.py; the metrics.json keys: evaluation/results.py):
  # 'ensemble' (one T), 'per_member' or '' (off). On by default: it costs a few hundred NLL
  # evaluations on the validation logits and only adds `<set>_tempered` entries to metrics.json.
  config.evaluation.temperature_scaling = 'ensemble'

  if args['dataset'] == 'fashion_mnist':
    config.batch_size = 128
    config.num_epochs = 20.0
    config.hparams.l2 = 10.0

  if args['smoke']:
    config.model.mlp.hidden = (16, 16)
    config.batch_size = 32
    config.eval_batch_size = 64
    config.num_train_steps = 12
    config.log_every_steps = 4
    config.eval_every_steps = 6
    config.checkpoint_every_steps = 6
    config.max_eval_examples = 200
  _add_member_hparams(config)
  _add_hyper_deep(config, small=args['arch'] in ('mlp', 'lenet'), smoke=args['smoke'])
  # A tune step sees as many unique examples as a train step (the official code's choice).
  config.hyper.validation_batch_size = config.batch_size
  return config.lock()


def _add_member_hparams(config: ml_collections.ConfigDict) -> None:
  """`config.member_hparams.<name>`: one value per member (a tuple of num_members), or () = unset.

  Set, they override `config.hparams` member by member (methods/base.py), so a vectorised pool of
  differently tuned members is an ordinary run whose config.json records every member's setting.
  Keys are the architecture's hyperparameters and the loss's, so `--config.member_hparams.l2=
  '(0.1, 3.0)'` works from the command line.
  """
  from hyper_ensembles.methods.base import LOSS_HPARAMS
  from hyper_ensembles.models.registry import get_architecture
  names = (*get_architecture(config.arch).hparams, *LOSS_HPARAMS)
  config.member_hparams = ml_collections.ConfigDict({name: () for name in names})


def _add_hyper_deep(config: ml_collections.ConfigDict, small: bool, smoke: bool) -> None:
  """The hyper-deep ensemble pipeline (hyper_ensembles/hyper_deep/; docs/design.md §5)."""
  hd = config.hyper_deep = ml_collections.ConfigDict()
  # κ: the default setting + κ − 1 random draws (paper: 50 for MLP / LeNet, 100 for ResNets).
  hd.pool_size = 50 if small else 100
  hd.ensemble_size = 0  # K; 0 = config.num_members
  hd.search_space = ml_collections.ConfigDict(_MLP_SEARCH_SPACE if small else _RESNET_SEARCH_SPACE)
  hd.sampling_seed = 0  # seed of the random search's draws
  # Pool members per vectorised program (memory); 1 = every member its own run (large models).
  # 25 MLP / LeNet members fit easily and give a resume point halfway through a pool of 50.
  hd.chunk_size = 25 if small else 1
  hd.stratify = True  # step 3: K inits of every selected setting, then select again
  # Step 4: retrain the final members on train ∪ validation (same seeds and settings).
  hd.retrain_on_train_plus_val = False
  hd.fixed_init_baseline = True  # also the random search with one shared init (paper baseline)
  hd.deep_baseline = True  # also the deep ensemble of the default setting (K inits)
  if smoke:
    hd.pool_size = 4
    hd.chunk_size = 4
