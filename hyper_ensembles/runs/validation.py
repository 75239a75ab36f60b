"""Whether a resolved config can run: every value inside its domain, checked before anything runs.

One table of rules per config family, `key → check`, read by `validate(config)`:

- `DEFAULT_RULES`: configs/default.py, the family every config builds on (sizes, durations,
  intervals, optimiser, fixed and per-member hyperparameters, hyper-batch and hyper-deep blocks);
- `FAMILY_RULES[arch]`: what configs/resnet20.py and configs/wrn28_10.py add (their model sections);
- a few rules that relate keys (a length that needs a positive epoch count, per-member tuples of
  `num_members` values, log-uniform ranges inside their hyperparameter's domain).

Names that registries own (method, arch, dataset, optimiser, temperature mode, entropy) arrive as
`choices` from the caller (training/config_check.py), so this module imports nothing of ours and
no JAX. A violation is a `ConfigError` naming the key, the value and the valid range or choices;
all violations of a config are reported together, on one line.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping

import ml_collections


class ConfigError(ValueError):
  """A config value outside its domain (the message names key, value and valid range)."""


@dataclasses.dataclass(frozen=True)
class Number:
  """A real (or, with `integer`, an integral) number in [lo, hi] (open ends where asked)."""

  lo: float = -math.inf
  hi: float = math.inf
  lo_open: bool = False
  hi_open: bool = False
  integer: bool = False
  extra: tuple = ()  # isolated valid values outside the interval (e.g. -1 = "off")

  def ok(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
      return False
    if value in self.extra:
      return True
    if self.integer and value != int(value):
      return False
    if not math.isfinite(value) and math.isfinite(self.lo) and math.isfinite(self.hi):
      return False
    above = value > self.lo if self.lo_open else value >= self.lo
    below = value < self.hi if self.hi_open else value <= self.hi
    return above and below

  def describe(self) -> str:
    kind = 'an integer' if self.integer else 'a number'
    if math.isinf(self.lo) and math.isinf(self.hi):
      interval = kind
    elif math.isinf(self.hi):
      interval = f'{kind} {">" if self.lo_open else ">="} {_fmt(self.lo)}'
    elif math.isinf(self.lo):
      interval = f'{kind} {"<" if self.hi_open else "<="} {_fmt(self.hi)}'
    else:
      interval = (f'{kind} in {"(" if self.lo_open else "["}{_fmt(self.lo)}, {_fmt(self.hi)}'
                  f'{")" if self.hi_open else "]"}')
    if self.extra:
      interval += ' or ' + ' or '.join(_fmt(v) for v in self.extra)
    return interval


@dataclasses.dataclass(frozen=True)
class Each:
  """A tuple whose every element passes `check` (of exactly `length` elements when set)."""

  check: Number
  length: int | None = None

  def ok(self, value) -> bool:
    if not isinstance(value, tuple | list):
      return False
    if self.length is not None and len(value) != self.length:
      return False
    return all(self.check.ok(v) for v in value)

  def describe(self) -> str:
    count = f'{self.length} values' if self.length is not None else 'a tuple of values'
    return f'{count}, each {self.check.describe()}'


@dataclasses.dataclass(frozen=True)
class OneOf:
  choices: tuple

  def ok(self, value) -> bool:
    return value in self.choices

  def describe(self) -> str:
    return 'one of: ' + ', '.join(repr(c) for c in self.choices)


def _fmt(x: float) -> str:
  return f'{x:g}' if isinstance(x, float) else str(x)


POSITIVE_INT = Number(lo=1, integer=True)
NON_NEGATIVE_INT = Number(lo=0, integer=True)
POSITIVE = Number(lo=0, lo_open=True)
NON_NEGATIVE = Number(lo=0)
PROBABILITY = Number(lo=0, hi=1, hi_open=True)  # dropout, label smoothing, momentum: [0, 1)

# Domains of the fixed hyperparameters (config.hparams, config.member_hparams); log-uniform ranges
# over them (config.hyper.space, config.hyper_deep.search_space) must also lie inside them.
HPARAM_DOMAINS: dict[str, Number] = {
    'dropout': PROBABILITY,
    'label_smoothing': PROBABILITY,
    **{name: NON_NEGATIVE for name in (
        'l2', 'l2_input_conv', 'l2_group_1', 'l2_group_2', 'l2_group_3', 'l2_dense_kernel',
        'l2_dense_bias', 'l2_bn')},
}

# configs/default.py: keys every config has.
DEFAULT_RULES: dict[str, object] = {
    'num_members': POSITIVE_INT,
    'seed': Number(integer=True),
    'init_seed': Number(lo=-1, integer=True),
    'batch_size': POSITIVE_INT,
    'eval_batch_size': POSITIVE_INT,
    'num_epochs': Number(),  # > 0 unless num_train_steps > 0: see _check_length
    'num_train_steps': Number(integer=True),
    'log_every_steps': POSITIVE_INT,
    'eval_every_steps': NON_NEGATIVE_INT,  # 0: only at the end
    'checkpoint_every_steps': POSITIVE_INT,
    'max_checkpoints_to_keep': POSITIVE_INT,
    'max_eval_examples': Number(lo=1, integer=True, extra=(-1,)),  # -1: all
    'data.validation_fraction': Number(lo=0, hi=1, lo_open=True, hi_open=True),
    'data.corruption_severities': Each(Number(lo=1, hi=5, integer=True)),
    'data.split_seed': NON_NEGATIVE_INT,
    'data.generated_eval_seed': NON_NEGATIVE_INT,
    'model.fast_weight_init': OneOf(('normal', 'random_sign')),
    'model.fast_weight_std': NON_NEGATIVE,
    'model.mlp.hidden': Each(POSITIVE_INT),
    'optimizer.learning_rate': POSITIVE,
    'optimizer.momentum': PROBABILITY,
    'optimizer.warmup_epochs': NON_NEGATIVE,
    'optimizer.decay_epochs': Each(POSITIVE),
    'optimizer.decay_fractions': Each(Number(lo=0, hi=1, lo_open=True, hi_open=True)),
    'optimizer.decay_factor': POSITIVE,
    'optimizer.fast_weight_lr_multiplier': NON_NEGATIVE,
    'optimizer.grad_clip_norm': NON_NEGATIVE,
    'hyper.tau': NON_NEGATIVE,
    'hyper.tune_every_steps': POSITIVE_INT,
    'hyper.tune_warmup_epochs': NON_NEGATIVE,
    'hyper.tune_learning_rate': POSITIVE,
    'hyper.init_half_width': Number(lo=0, hi=0.5, lo_open=True),
    'hyper.init_member_spread': Number(lo=0, hi=1),
    'hyper.embedding_std': NON_NEGATIVE,
    'hyper.embedding_hidden': NON_NEGATIVE_INT,
    'hyper.eval_samples': NON_NEGATIVE_INT,
    'hyper.validation_batch_size': POSITIVE_INT,
    'hyper_deep.pool_size': POSITIVE_INT,
    'hyper_deep.ensemble_size': NON_NEGATIVE_INT,  # 0: num_members
    'hyper_deep.chunk_size': POSITIVE_INT,
    'hyper_deep.sampling_seed': NON_NEGATIVE_INT,
}

# What configs/resnet20.py and configs/wrn28_10.py add, by architecture.
FAMILY_RULES: dict[str, dict[str, object]] = {
    'resnet20': {
        'model.resnet20.widths': Each(POSITIVE_INT, length=3),
        'model.resnet20.blocks_per_stage': POSITIVE_INT,
    },
    'wrn28_10': {
        # 6n + 4 layers, n >= 1 blocks per group (models/wide_resnet.py): checked in _check_family.
        'model.wrn.depth': Number(lo=10, integer=True),
        'model.wrn.width': POSITIVE_INT,
    },
}


def _get(config, key: str):
  node = config
  for part in key.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      return _MISSING
    node = node[part]
  return node


_MISSING = object()


def _violation(key: str, value, valid: str) -> str:
  return f'config.{key}={value!r} is invalid: it must be {valid}'


def _check_rules(config, rules: Mapping[str, object]) -> list[str]:
  problems = []
  for key, check in rules.items():
    value = _get(config, key)
    if value is _MISSING:
      continue  # the family does not have this key (e.g. no model.mlp in a ResNet config)
    if not check.ok(value):
      problems.append(_violation(key, value, check.describe()))
  return problems


def _check_length(config) -> list[str]:
  steps, epochs = _get(config, 'num_train_steps'), _get(config, 'num_epochs')
  if isinstance(steps, numbers.Real) and steps > 0:
    return []
  if isinstance(epochs, numbers.Real) and not isinstance(epochs, bool) and epochs > 0 and (
      math.isfinite(epochs)):
    return []
  return [f'config.num_epochs={epochs!r} is invalid: it must be a number > 0 (or set '
          f'config.num_train_steps > 0; it is {steps!r})']


def _check_hparams(config) -> list[str]:
  problems = []
  members = _get(config, 'num_members')
  hparams = _get(config, 'hparams')
  for name, value in (hparams if hparams is not _MISSING else {}).items():
    if name in HPARAM_DOMAINS and not HPARAM_DOMAINS[name].ok(value):
      problems.append(_violation(f'hparams.{name}', value, HPARAM_DOMAINS[name].describe()))
  member_hparams = _get(config, 'member_hparams')
  for name, values in (member_hparams if member_hparams is not _MISSING else {}).items():
    if not len(values):
      continue  # unset: config.hparams for every member
    check = Each(HPARAM_DOMAINS.get(name, Number()), length=members)
    if not check.ok(values):
      problems.append(_violation(f'member_hparams.{name}', values,
                                 f'() or {check.describe()} (one per member)'))
  return problems


def _check_ranges(config, section: str) -> list[str]:
  """Log-uniform ranges {name: (lo, hi)}: 0 < lo < hi, inside the hyperparameter's domain."""
  problems = []
  space = _get(config, section)
  for name, bounds in (space if space is not _MISSING else {}).items():
    key = f'{section}.{name}'
    domain = HPARAM_DOMAINS.get(name, POSITIVE)
    inside = Number(lo=max(domain.lo, 0.0), hi=domain.hi, lo_open=True, hi_open=domain.hi_open)
    if not (isinstance(bounds, tuple | list) and len(bounds) == 2
            and all(inside.ok(b) for b in bounds) and bounds[0] < bounds[1]):
      problems.append(_violation(
          key, bounds, f'a log-uniform range (min, max) with min < max, both {inside.describe()}'))
  return problems


def _check_family(config) -> list[str]:
  depth = _get(config, 'model.wrn.depth')
  if config.get('arch') == 'wrn28_10' and isinstance(depth, int) and (depth - 4) % 6:
    return [_violation('model.wrn.depth', depth, '6n + 4 with n >= 1 (10, 16, 22, 28, ...)')]
  return []


def validate(config: ml_collections.ConfigDict,
             choices: Mapping[str, Collection] | None = None) -> None:
  """Raises ConfigError naming every value of `config` outside its domain; returns None if none.

  Args:
    config: a resolved config (configs/default.py family, or one built on it).
    choices: {dotted key: valid names} for keys whose names a registry owns.
  """
  problems = []
  for key, names in (choices or {}).items():
    value = _get(config, key)
    if value is not _MISSING and value not in names:
      problems.append(_violation(key, value, OneOf(tuple(sorted(names))).describe()))
  problems += _check_rules(config, DEFAULT_RULES)
  problems += _check_rules(config, FAMILY_RULES.get(config.get('arch'), {}))
  problems += _check_family(config)
  problems += _check_length(config)
  problems += _check_hparams(config)
  problems += _check_ranges(config, 'hyper.space')
  problems += _check_ranges(config, 'hyper_deep.search_space')
  if problems:
    raise ConfigError('; '.join(problems))
