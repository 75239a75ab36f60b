"""Member logits of named evaluation sets: the jitted eval step over sharded, padded batches.

Every method's `predict` returns `[M, B, C]`; this module runs it over padded batches sharded along
B, gathers the logits of every process and drops the padding. What becomes of the logits (the
metrics.json results) is results.py's.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from hyper_ensembles.data.dataset import ArraySplit, Dataset
from hyper_ensembles.data.streams import eval_batches
from hyper_ensembles.evaluation import results
from hyper_ensembles.training import sharding


def eval_sets(dataset: Dataset) -> dict[str, ArraySplit]:
  """Every evaluation set of a dataset by name: validation, test, then the shifted and OOD sets."""
  return {'validation': dataset.validation, 'test': dataset.test, **dataset.extra_eval}


def make_eval_step(method, mesh: Mesh):
  """Jitted `(state, images [B, ...]) → logits [M, B, C]`, logits sharded along B."""
  return jax.jit(lambda state, images: method.predict(state, images),
                 out_shardings=sharding.batch_sharding(mesh, 1))


def predict_split(eval_step, state, split: ArraySplit, batch_size: int, mesh: Mesh,
                  max_examples: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """Member logits `[M, N, C]` (float32, on every host) and labels `[N]` for a whole split."""
  n = len(split) if max_examples <= 0 else min(max_examples, len(split))
  rows = sharding.process_rows(batch_size)
  chunks = []
  for batch in eval_batches(split, batch_size, rows=rows, max_examples=max_examples):
    logits = eval_step(state, sharding.to_global(batch['images'], mesh, 0))
    chunks.append(np.asarray(multihost_utils.process_allgather(logits, tiled=True)))
  logits = np.concatenate(chunks, axis=1)[:, :n].astype(np.float32)
  return logits, split.labels[:n]


def evaluate(eval_step, state, eval_sets: dict[str, ArraySplit], batch_size: int, mesh: Mesh,
             max_examples: int = -1, temperature_scaling: str = results.DEFAULT_MODE
             ) -> tuple[dict[str, dict], dict[str, tuple]]:
  """Metrics `{set: {...}}` and predictions `{set: (logits, labels)}` for every named set."""
  predictions = {name: predict_split(eval_step, state, split, batch_size, mesh, max_examples)
                 for name, split in eval_sets.items()}
  metrics = results.metrics_from_predictions(predictions, temperature_scaling=temperature_scaling)
  return metrics, predictions
