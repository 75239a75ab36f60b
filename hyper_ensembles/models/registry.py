"""Architecture registry: name → builder from the config, and the hyperparameters it reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import ml_collections

from hyper_ensembles.models import lenet, mlp, resnet20, wide_resnet
from hyper_ensembles.models.kit import LayerKit


@dataclasses.dataclass(frozen=True)
class Architecture:
  build: Callable[[ml_collections.ConfigDict, LayerKit, int], nn.Module]
  hparams: tuple[str, ...]  # hyperparameter names the model reads from its Conditioning
  # Whether the network has convolutions: vectorised methods then map its members one after
  # another instead of `vmap`ping them (methods/member_map.py).
  convolutional: bool = False


def _section(cfg: ml_collections.ConfigDict, name: str, config_file: str
             ) -> ml_collections.ConfigDict:
  """`cfg.<name>`, or an error naming the config family that sets it."""
  if name not in cfg:
    raise ValueError(
        f'config.model.{name} is missing: use {config_file} (e.g. '
        f'--config={config_file}:method=batch,dataset=cifar10), which sets it')
  return cfg[name]


def _resnet20(cfg, kit, num_classes):
  section = _section(cfg, 'resnet20', 'configs/resnet20.py')
  return resnet20.ResNet(kit=kit, num_classes=num_classes, widths=tuple(section.widths),
                         blocks_per_stage=section.blocks_per_stage)


def _wrn(cfg, kit, num_classes):
  section = _section(cfg, 'wrn', 'configs/wrn28_10.py')
  return wide_resnet.WideResNet(kit=kit, num_classes=num_classes, depth=section.depth,
                                width=section.width)


ARCHITECTURES: dict[str, Architecture] = {
    'mlp': Architecture(
        build=lambda cfg, kit, num_classes: mlp.MLP(
            kit=kit, num_classes=num_classes, hidden=tuple(cfg.mlp.hidden)),
        hparams=mlp.HPARAMS),
    'lenet': Architecture(
        build=lambda cfg, kit, num_classes: lenet.LeNet(kit=kit, num_classes=num_classes),
        hparams=lenet.HPARAMS, convolutional=True),
    # Sizes come from config.model.resnet20 / config.model.wrn (smoke presets shrink them).
    'resnet20': Architecture(build=_resnet20, hparams=resnet20.HPARAMS, convolutional=True),
    'wrn28_10': Architecture(build=_wrn, hparams=wide_resnet.HPARAMS, convolutional=True),
}


def get_architecture(name: str) -> Architecture:
  if name not in ARCHITECTURES:
    raise ValueError(
        f'Unknown architecture {name!r}; choose one of: {", ".join(sorted(ARCHITECTURES))}')
  return ARCHITECTURES[name]


def create_model(model_config: ml_collections.ConfigDict, arch: str, kit: LayerKit,
                 num_classes: int) -> nn.Module:
  return get_architecture(arch).build(model_config, kit, num_classes)
