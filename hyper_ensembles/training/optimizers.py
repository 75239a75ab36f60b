"""Optimiser and learning-rate schedule from the config; fast weights get their own multiplier.

Durations are given in epochs in the config and converted to steps here, with the number of steps
per epoch of the actual dataset and batch size. Learning-rate decays are placed either at absolute
epochs (`decay_epochs`, as the official CIFAR protocol states them) or at fractions of the run
(`decay_fractions`), which follow `--config.num_epochs` overrides.
"""

from __future__ import annotations

import math

import ml_collections
import optax

OPTIMIZERS = ('sgd', 'adam')


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """The run's length in steps: `num_train_steps` if > 0, else `num_epochs` worth of steps."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def create_learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                                  total_steps: int) -> optax.Schedule:
  """Linear warm-up over `warmup_epochs`, then × `decay_factor` at each of `decay_epochs` and at
  each of `decay_fractions` × `total_steps`."""
  warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
  steps = [round(e * steps_per_epoch) for e in cfg.decay_epochs]
  steps += [round(f * total_steps) for f in cfg.decay_fractions]
  boundaries: dict[int, float] = {}
  for step in steps:  # two decays at one step compound
    boundaries[step] = boundaries.get(step, 1.0) * cfg.decay_factor
  constant = optax.piecewise_constant_schedule(cfg.learning_rate, boundaries)
  if warmup_steps == 0:
    return constant
  warmup = optax.linear_schedule(0.0, cfg.learning_rate, warmup_steps)
  # join_schedules restarts the second schedule's count at the boundary; shift it back so decay
  # boundaries stay in absolute steps.
  shifted = lambda step: constant(step + warmup_steps)
  return optax.join_schedules([warmup, shifted], [warmup_steps])


def create_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int, param_labels,
                     total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The configured optimiser; updates of parameters labelled 'fast' are scaled by
  `fast_weight_lr_multiplier` (batch-ensemble r, s; the official code uses 0.5)."""
  schedule = create_learning_rate_schedule(cfg, steps_per_epoch, total_steps)
  if cfg.name == 'sgd':
    tx = optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
  elif cfg.name == 'adam':
    tx = optax.adam(schedule)
  else:
    raise ValueError(f'Unknown optimizer {cfg.name!r}; choose one of: {", ".join(OPTIMIZERS)}')
  if cfg.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  multiplier = optax.multi_transform(
      {'slow': optax.identity(), 'fast': optax.scale(cfg.fast_weight_lr_multiplier)},
      param_labels)
  return optax.chain(tx, multiplier), schedule
