"""Architecture registry: name → builder from the config, and the hyperparameters it reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import ml_collections

from hyper_ensembles.models import lenet, mlp
from hyper_ensembles.models.kit import LayerKit


@dataclasses.dataclass(frozen=True)
class Architecture:
  build: Callable[[ml_collections.ConfigDict, LayerKit, int], nn.Module]
  hparams: tuple[str, ...]  # hyperparameter names the model reads from its Conditioning


ARCHITECTURES: dict[str, Architecture] = {
    'mlp': Architecture(
        build=lambda cfg, kit, num_classes: mlp.MLP(
            kit=kit, num_classes=num_classes, hidden=tuple(cfg.mlp.hidden)),
        hparams=mlp.HPARAMS),
    'lenet': Architecture(
        build=lambda cfg, kit, num_classes: lenet.LeNet(kit=kit, num_classes=num_classes),
        hparams=lenet.HPARAMS),
}


def get_architecture(name: str) -> Architecture:
  if name not in ARCHITECTURES:
    raise ValueError(
        f'Unknown architecture {name!r}; choose one of: {", ".join(sorted(ARCHITECTURES))}')
  return ARCHITECTURES[name]


def create_model(model_config: ml_collections.ConfigDict, arch: str, kit: LayerKit,
                 num_classes: int) -> nn.Module:
  return get_architecture(arch).build(model_config, kit, num_classes)
