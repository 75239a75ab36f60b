"""The convolution and 2×2 max-pool every layer form and architecture uses (docs/design.md §10).

One implementation serves the plain, batch-ensemble and hyper-batch conv layers (layers.py,
hyper_layers.py), LeNet, ResNet-20 and the Wide ResNet. It is `lax.conv_general_dilated` (NHWC /
HWIO) with two choices that make XLA:CPU fast for the small channel counts of LeNet, measured on
the benchmark's workloads (README, Speed):

- **Row chunks** (`conv2d`): on the CPU backend the rows are convolved in chunks of at most
  `CPU_ROW_CHUNK`, unrolled in the program and concatenated. The values are those of one
  convolution; the kernel gradient becomes a sum of per-chunk kernel gradients. XLA:CPU's
  kernel-gradient convolution (the slow part of a LeNet step) runs 2.5–3.5× faster on 128-row
  chunks than on 512 rows. Other backends get one convolution (`row_chunk` None).
- **Per-member kernels** (`member_conv2d`): the batch-ensemble slow path conv(x_k ∘ r_k, W), with r
  scaling input channels, equals conv(x_k, W ∘ r_k); each member's rows are convolved with its own
  kernel. Autodiff then gets ∂W and ∂r from the per-member kernel gradients and needs no
  input-gradient convolution where x needs no gradient (a first layer), and no copy x ∘ r is
  materialised. The hyper-batch layer passes [W, Δ] stacked along the outputs.

Patches + matmul (im2col) and `reduce_window` pooling were measured too and lose 2–80× and 5–24×
(backward) on XLA:CPU; no XLA flag helped. `vmap` over convolutions becomes a grouped convolution,
the slowest form of all: vectorised methods map conv architectures' members without it
(methods/member_map.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
CPU_ROW_CHUNK = 128


def default_row_chunk() -> int | None:
  """Rows per convolution: `CPU_ROW_CHUNK` on the CPU backend, else None (one convolution)."""
  return CPU_ROW_CHUNK if jax.default_backend() == 'cpu' else None


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = 'SAME', row_chunk: int | None = -1
           ) -> jax.Array:
  """2-D convolution of x `[..., H, W, C_in]` (any leading row axes) with kernel `[kh, kw, C_in,
  C_out]`, the values of `lax.conv_general_dilated(rows, kernel, strides, padding,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`.

  Args:
    row_chunk: rows per convolution; -1 (default) takes `default_row_chunk()`, None one
      convolution over all rows.
  """
  if row_chunk == -1:
    row_chunk = default_row_chunk()
  lead = x.shape[:-3]
  rows = x.reshape((-1, *x.shape[-3:]))
  conv = lambda part: lax.conv_general_dilated(
      part, kernel, window_strides=tuple(strides), padding=padding,
      dimension_numbers=DIMENSION_NUMBERS)
  n = rows.shape[0]
  if row_chunk is None or n <= row_chunk:
    y = conv(rows)
  else:
    y = jnp.concatenate([conv(rows[i:i + row_chunk]) for i in range(0, n, row_chunk)], axis=0)
  return y.reshape(lead + y.shape[1:])


def member_conv2d(x: jax.Array, kernel: jax.Array, r: jax.Array, strides: Sequence[int] = (1, 1),
                  padding: str | Sequence[tuple[int, int]] = 'SAME', row_chunk: int | None = -1
                  ) -> jax.Array:
  """conv(x_k ∘ r_k, W) for every member k: x `[M, B, H, W, C_in]`, r `[M, C_in]` → `[M, B, ...]`.

  Computed as conv(x_k, W ∘ r_k), one convolution (in row chunks) per member.
  """
  if x.shape[0] != r.shape[0]:
    raise ValueError(f'member_conv2d: x has {x.shape[0]} members, r has {r.shape[0]}')
  return jnp.stack([conv2d(x[k], kernel * r[k][:, None], strides, padding, row_chunk)
                    for k in range(x.shape[0])])


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max-pool with stride 2 over `[..., H, W, C]`, SAME padding.

  The value equals `flax.linen.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')`. With even H
  and W it is the maximum of the four strided slices, whose gradient is elementwise selects rather
  than XLA:CPU's slow select-and-scatter (5–24× faster). The gradient equals max_pool's except at
  exact ties inside a window, where it is shared between the tied inputs instead of routed to one
  of them (both are gradients of the max). After a ReLU most ties are zeros, whose gradient is
  zero anyway. Odd sizes take `reduce_window`.
  """
  h, w = x.shape[-3], x.shape[-2]
  if h % 2 or w % 2:
    window = (1,) * (x.ndim - 3) + (2, 2, 1)
    return lax.reduce_window(x, -jnp.inf, lax.max, window, window, 'SAME')
  top = jnp.maximum(x[..., 0::2, 0::2, :], x[..., 0::2, 1::2, :])
  bottom = jnp.maximum(x[..., 1::2, 0::2, :], x[..., 1::2, 1::2, :])
  return jnp.maximum(top, bottom)
