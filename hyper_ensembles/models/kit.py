"""`LayerKit`: builds an architecture's layers in plain, batch-ensemble or hyper-batch form.

Architectures are written once against a kit (`kit.dense(...)`, `kit.conv(...)`); the kit decides
which layer class implements each form. Adding a form means adding one entry to `FORMS`, the
registry of forms, which imports every form's layers itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn

from hyper_ensembles.models import hyper_layers, layers


def _plain(kit: LayerKit, kind: str, kwargs: dict) -> nn.Module:
  return (layers.Dense if kind == 'dense' else layers.Conv)(**kwargs)


def _batch(kit: LayerKit, kind: str, kwargs: dict) -> nn.Module:
  cls = layers.BatchEnsembleDense if kind == 'dense' else layers.BatchEnsembleConv
  return cls(num_members=kit.num_members, fast_init=kit.fast_init, fast_std=kit.fast_std, **kwargs)


def _hyper_batch(kit: LayerKit, kind: str, kwargs: dict) -> nn.Module:
  dense, conv = hyper_layers.HyperBatchEnsembleDense, hyper_layers.HyperBatchEnsembleConv
  cls = dense if kind == 'dense' else conv
  return cls(num_members=kit.num_members, fast_init=kit.fast_init, fast_std=kit.fast_std,
             tie_uv=kit.tie_uv, embedding_std=kit.embedding_std,
             embedding_hidden=kit.embedding_hidden,
             l2_with_fast_weights=kit.l2_with_fast_weights, **kwargs)


# form name → builder(kit, 'dense' | 'conv', layer kwargs).
FORMS: dict[str, Callable[[LayerKit, str, dict], nn.Module]] = {
    'plain': _plain,
    'batch': _batch,
    'hyper_batch': _hyper_batch,
}


@dataclasses.dataclass(frozen=True)
class LayerKit:
  """Which form to build and the form's options (hashable, so it can be a module attribute)."""

  form: str = 'plain'
  num_members: int = 1
  fast_init: str = 'normal'
  fast_std: float = 0.5
  # Hyper-batch options (ignored by the other forms).
  tie_uv: bool = True
  embedding_std: float = 1e-4
  embedding_hidden: int = 0  # hidden tanh units of e(λ̃); 0 = linear (official default)
  l2_with_fast_weights: bool = False  # whether the λ-dependent L2 norm includes r, s (u, v)

  def __post_init__(self):
    if self.form not in FORMS:
      raise ValueError(f'Unknown layer form {self.form!r}; choose one of: {", ".join(FORMS)}')

  @property
  def has_member_axis(self) -> bool:
    """Plain models see `[B, ...]`; every other form sees `[M, B, ...]`."""
    return self.form != 'plain'

  def dense(self, features: int, *, kernel_l2: str | None = None, bias_l2: str | None = None,
            use_bias: bool = True, name: str | None = None) -> nn.Module:
    return FORMS[self.form](self, 'dense', dict(
        features=features, kernel_l2=kernel_l2, bias_l2=bias_l2, use_bias=use_bias, name=name))

  def conv(self, features: int, kernel_size: tuple[int, int] = (3, 3), *,
           strides: tuple[int, int] = (1, 1), padding: str = 'SAME',
           kernel_l2: str | None = None, bias_l2: str | None = None, use_bias: bool = True,
           name: str | None = None) -> nn.Module:
    return FORMS[self.form](self, 'conv', dict(
        features=features, kernel_size=tuple(kernel_size), strides=tuple(strides),
        padding=padding, kernel_l2=kernel_l2, bias_l2=bias_l2, use_bias=use_bias, name=name))
