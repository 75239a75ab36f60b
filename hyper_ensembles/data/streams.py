"""Batch streams over in-memory splits: train (shuffled, indexable by step) and evaluation.

The train stream is a pure function of (seed, step): the permutation of epoch e for data order o
comes from `np.random.default_rng((seed + o, e))` — order o of a stream seeded s is the order of a
stream seeded s + o, so deep-ensemble member k sees what a single model with seed + k sees.
A checkpoint therefore needs only the step to resume the stream exactly, and every process
computes the same global batch and keeps its own rows of it (so results do not depend on the
number of hosts or devices).

Evaluation batches are padded to a fixed size with a mask, so every example counts exactly once
and one compiled evaluation step serves the last partial batch too.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterator

import numpy as np

from hyper_ensembles.data.dataset import ArraySplit


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Train steps in one epoch: full batches only (the last partial batch is dropped), at least 1.

  The one definition of an epoch's length for the train stream, the optimiser schedule, the
  hyper-batch tuner's warm-up and every script that converts epochs into steps.
  """
  return max(1, num_examples // global_batch_size)


class TrainStream:
  """Shuffled batches `{'images': [S, b, H, W, C], 'labels': [S, b]}` for step = 0, 1, ...

  S = `num_orders` independent data orders (one per deep-ensemble member, else 1); b = this
  process's rows of the global batch. The last partial batch of each epoch is dropped.
  """

  def __init__(self, split: ArraySplit, global_batch_size: int, num_orders: int, seed: int,
               rows: slice | None = None, what: str = 'batch_size'):
    if global_batch_size > len(split):
      raise ValueError(
          f'{what}={global_batch_size} is larger than the split it draws from '
          f'({len(split)} examples); choose at most {len(split)}')
    if global_batch_size < 1:
      raise ValueError(f'{what} must be positive, got {global_batch_size}')
    self.split = split
    self.global_batch_size = global_batch_size
    self.num_orders = num_orders
    self.seed = seed
    self.rows = rows if rows is not None else slice(0, global_batch_size)
    self.steps_per_epoch = steps_per_epoch(len(split), global_batch_size)
    self._cache: dict[tuple[int, int], np.ndarray] = {}

  def _permutation(self, order: int, epoch: int) -> np.ndarray:
    key = (order, epoch)
    if key not in self._cache:
      if len(self._cache) > 4 * self.num_orders:
        self._cache.clear()
      self._cache[key] = np.random.default_rng((self.seed + order, epoch)).permutation(
          len(self.split))
    return self._cache[key]

  def indices(self, step: int) -> np.ndarray:
    """Example indices `[S, b]` of this process's rows at `step`."""
    epoch, within = divmod(step, self.steps_per_epoch)
    start = within * self.global_batch_size
    batch = slice(start + self.rows.start, start + self.rows.stop)
    return np.stack([self._permutation(o, epoch)[batch] for o in range(self.num_orders)])

  def batch(self, step: int) -> dict[str, np.ndarray]:
    idx = self.indices(step)
    return {'images': self.split.images[idx], 'labels': self.split.labels[idx].astype(np.int32)}


def eval_batches(split: ArraySplit, global_batch_size: int, rows: slice | None = None,
                 max_examples: int = -1) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-order batches `{'images': [b, ...], 'labels': [b], 'mask': [b]}`, padded at the end.

  `max_examples` > 0 evaluates only the first that many examples (smoke runs).
  """
  n = len(split) if max_examples <= 0 else min(max_examples, len(split))
  rows = rows if rows is not None else slice(0, global_batch_size)
  for start in range(0, n, global_batch_size):
    idx = np.arange(start + rows.start, start + rows.stop)
    mask = idx < n
    idx = np.where(mask, idx, 0)
    yield {'images': split.images[idx], 'labels': split.labels[idx].astype(np.int32),
           'mask': mask}


def prefetch(make: Callable[[int], object], start: int, stop: int, depth: int = 2
             ) -> Iterator[object]:
  """Yields make(start), ..., make(stop - 1), computing up to `depth` items ahead on a thread.

  Gathering a batch from host memory and moving it to the devices overlaps with the previous
  step's computation.
  """
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    pending: collections.deque = collections.deque()
    nxt = start
    while nxt < stop and len(pending) < depth:
      pending.append(pool.submit(make, nxt))
      nxt += 1
    while pending:
      item = pending.popleft().result()
      if nxt < stop:
        pending.append(pool.submit(make, nxt))
        nxt += 1
      yield item
