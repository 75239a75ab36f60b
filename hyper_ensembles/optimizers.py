"""Optimiser and learning-rate schedule from the config; fast weights get their own multiplier.

Durations are given in epochs in the config and converted to steps here, with the number of steps
per epoch of the actual dataset and batch size.
"""

from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ('sgd', 'adam')


def create_learning_rate_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int
                                  ) -> optax.Schedule:
  """Linear warm-up over `warmup_epochs`, then × `decay_factor` at each of `decay_epochs`."""
  warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
  boundaries = {round(e * steps_per_epoch): cfg.decay_factor for e in cfg.decay_epochs}
  constant = optax.piecewise_constant_schedule(cfg.learning_rate, boundaries)
  if warmup_steps == 0:
    return constant
  warmup = optax.linear_schedule(0.0, cfg.learning_rate, warmup_steps)
  # join_schedules restarts the second schedule's count at the boundary; shift it back so decay
  # boundaries stay in absolute steps.
  shifted = lambda step: constant(step + warmup_steps)
  return optax.join_schedules([warmup, shifted], [warmup_steps])


def create_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int, param_labels
                     ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The configured optimiser; updates of parameters labelled 'fast' are scaled by
  `fast_weight_lr_multiplier` (batch-ensemble r, s; the official code uses 0.5)."""
  schedule = create_learning_rate_schedule(cfg, steps_per_epoch)
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
