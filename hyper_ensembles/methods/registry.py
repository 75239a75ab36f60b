"""Method registry: the names users type (`--config=...:method=NAME`) → method classes."""

from __future__ import annotations

from hyper_ensembles.methods.base import Method
from hyper_ensembles.methods.batch import BatchEnsemble
from hyper_ensembles.methods.deep import DeepEnsemble, SingleModel
from hyper_ensembles.methods.hyper_batch import HyperBatchEnsemble, SelfTuningNetwork

METHODS: dict[str, type[Method]] = {
    'single': SingleModel,
    'deep': DeepEnsemble,
    'batch': BatchEnsemble,
    'hyper_batch': HyperBatchEnsemble,
    'stn': SelfTuningNetwork,  # the self-tuning-network baseline: hyper_batch with M = 1
}


def get_method_class(name: str) -> type[Method]:
  if name not in METHODS:
    raise ValueError(f'Unknown method {name!r}; choose one of: {", ".join(sorted(METHODS))}')
  return METHODS[name]


def create_method(config, info, num_train, hparam_values=None) -> Method:
  return get_method_class(config.method)(config, info, num_train, hparam_values)
