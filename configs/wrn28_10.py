"""Wide ResNet-28-10 on CIFAR: `--config=configs/wrn28_10.py:method=hyper_batch,dataset=cifar100`.

The paper's Table 2 / the official uncertainty-baselines WRN-28-10 runs. Args as in
configs/resnet20.py (`method=`, `dataset=`, flag `smoke`), and so is the protocol (docs/design.md
§6):
K = 4, 128 unique images per step, SGD Nesterov 0.9, lr 0.1 × batch / 128, 1 warm-up epoch,
× 0.2 at epochs 100 / 200 / 225 of 250, 95 % / 5 % train / validation, L2 groups and ranges as the
official code. `smoke` builds a WRN-10-1 (one pre-activation block per group, widths 16 / 32 / 64)
for a few steps.
"""

from __future__ import annotations

import ml_collections

from configs import resnet20


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return resnet20.build_config(arg, 'wrn28_10', 'wrn', {'depth': 28, 'width': 10},
                               {'depth': 10, 'width': 1})
