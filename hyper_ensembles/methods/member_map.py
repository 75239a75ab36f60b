"""How a vectorised method maps one member's function over the leading member axis.

Deep ensembles and random-search pools (`Method.vectorized`) stack every member's parameters,
optimiser state and hyperparameters along axis 0. For dense architectures `jax.vmap` turns the
members' matmuls into batched matmuls, which XLA runs well. For convolutional ones (the
architecture registry's `convolutional`) `vmap` turns the members' convolutions into one grouped
convolution, which XLA:CPU runs 4–8× slower than the same convolutions one after another (a LeNet
deep ensemble of 4: 0.63 steps/s vmapped, 5.35 unrolled, 1.42 with `lax.map`; README, Speed). Such
members are unrolled: each member's function is traced once per member in the same program and
the results are stacked, so member k's computation is that of the network alone; an optimisation
barrier makes each member start after the previous one has finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def member_map(fn: Callable[..., Any], in_axes: Sequence[int | None], unroll: bool
               ) -> Callable[..., Any]:
  """`jax.vmap(fn, in_axes)` over axis 0, or with `unroll` the same result from a Python loop.

  Args:
    fn: one member's function of positional arguments.
    in_axes: per positional argument, 0 (mapped over its leading axis: every leaf carries it) or
      None (the same for every member).
    unroll: members one after another in the program instead of `vmap`.
  """
  if any(axis not in (0, None) for axis in in_axes):
    raise ValueError(f'member_map maps axis 0 or nothing, got in_axes={tuple(in_axes)}')
  if not unroll:
    return jax.vmap(fn, in_axes=tuple(in_axes))

  def unrolled(*args):
    if len(args) != len(in_axes):
      raise ValueError(f'member_map: {len(args)} arguments for {len(in_axes)} in_axes')
    mapped = [jax.tree.leaves(a) for a, axis in zip(args, in_axes) if axis == 0]
    sizes = {leaf.shape[0] for leaves in mapped for leaf in leaves}
    if len(sizes) != 1:
      raise ValueError(f'member_map: mapped arguments need one leading member axis, got sizes '
                       f'{sorted(sizes)}')
    (m,) = sizes
    member = lambda k: [a if axis is None else jax.tree.map(lambda leaf: leaf[k], a)
                        for a, axis in zip(args, in_axes)]
    outs = []
    for k in range(m):
      args_k = member(k)
      if outs:
        # Member k starts after member k - 1 has finished: XLA:CPU would otherwise run the
        # members' independent convolutions concurrently, each on fewer threads and with all
        # members' activations live at once (measured 1.13× slower for a LeNet deep ensemble).
        outs[-1], args_k = jax.lax.optimization_barrier((outs[-1], args_k))
      outs.append(fn(*args_k))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outs)

  return unrolled
