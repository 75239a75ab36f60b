"""The one evaluation path: member logits for named evaluation sets → metrics and predictions.

Every method's `predict` returns `[M, B, C]`; this module runs it over padded, sharded batches,
gathers the logits of every process, drops the padding and computes the metrics of
metrics.compute_metrics. New evaluation sets (shifted, OOD) plug in by name.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from hyper_ensembles import metrics as metrics_lib
from hyper_ensembles import sharding
from hyper_ensembles.data.dataset import ArraySplit
from hyper_ensembles.data.streams import eval_batches


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
             max_examples: int = -1) -> tuple[dict[str, dict], dict[str, tuple]]:
  """Metrics `{set: {...}}` and predictions `{set: (logits, labels)}` for every named set."""
  results, predictions = {}, {}
  for name, split in eval_sets.items():
    logits, labels = predict_split(eval_step, state, split, batch_size, mesh, max_examples)
    results[name] = metrics_lib.compute_metrics(logits, labels)
    predictions[name] = (logits, labels)
  return results, predictions


def scalar_summaries(results: dict[str, dict]) -> dict[str, float]:
  """Flattens `{set: metrics}` into `{'set/metric': value}` scalars for the metric writer."""
  out = {}
  for name, values in results.items():
    for key, value in values.items():
      if isinstance(value, list):
        out.update({f'{name}/{key}_{k}': v for k, v in enumerate(value)})
      else:
        out[f'{name}/{key}'] = value
  return out
