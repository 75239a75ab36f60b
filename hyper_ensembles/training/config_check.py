"""The whole-config check every run passes before anything runs or is written.

`check(config)` is runs/validation.py's domain rules with the names the registries own (methods,
architectures, datasets, optimisers, temperature-scaling modes, λ entropies, hyper-batch inits)
filled in, so an unknown name and an out-of-range value fail the same way, on one line. main.py
calls it on the resolved config before handing over, `train.train_and_evaluate` and the hyper-deep
planner call it again for callers that bypass main (scripts, launchers, tests).
"""

from __future__ import annotations

import ml_collections

from hyper_ensembles.data.registry import DATASETS
from hyper_ensembles.maths.log_uniform import ENTROPIES
from hyper_ensembles.maths.temperature import MODES
from hyper_ensembles.methods.hyper_batch import INITS
from hyper_ensembles.methods.registry import METHODS
from hyper_ensembles.models.registry import ARCHITECTURES
from hyper_ensembles.runs import validation
from hyper_ensembles.training.optimizers import OPTIMIZERS

# Methods that are pipelines of ordinary runs rather than registered `Method`s (hyper_deep/).
PIPELINE_METHODS = ('hyper_deep',)


def choices() -> dict[str, tuple[str, ...]]:
  """{dotted config key: valid names} of the keys whose names a registry owns."""
  return {
      'method': (*METHODS, *PIPELINE_METHODS),
      'arch': tuple(ARCHITECTURES),
      'dataset': tuple(DATASETS),
      'optimizer.name': OPTIMIZERS,
      'evaluation.temperature_scaling': ('', *MODES),
      'hyper.entropy': tuple(ENTROPIES),
      'hyper.init': INITS,
  }


def check(config: ml_collections.ConfigDict) -> None:
  """Raises validation.ConfigError (a ValueError) naming every bad key, value and valid range."""
  validation.validate(config, choices())
