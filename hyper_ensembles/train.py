"""The training loop: init or restore, jitted train (and tune) steps, periodic eval/log/checkpoint.

`train_and_evaluate(config, workdir)` is the single entry point used by `main.py`, the scripts and
the tests. The train step is compiled once and runs SPMD over the `('data',)` mesh: batches are
sharded, the state replicated. Methods with a tuner (hyper-batch ensembles) add a separately
jitted tune step on validation batches every `tune_every_steps` train steps.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils

from hyper_ensembles.data.registry import load_dataset
from hyper_ensembles.data.streams import TrainStream, prefetch
from hyper_ensembles.evaluation import predict
from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.methods.base import Method
from hyper_ensembles.methods.registry import create_method
from hyper_ensembles.runs import interrupts
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.training import config_check, divergence, sharding
from hyper_ensembles.training.checkpoints import Checkpointer
from hyper_ensembles.training.optimizers import num_train_steps
from hyper_ensembles.training.state import TrainState, count_params, create_train_state


def make_train_step(method: Method, tx: optax.GradientTransformation):
  """Pure `(state, batch) → (state, metrics)`; vmapped over members for vectorised methods."""

  def member_update(params, model_state, opt_state, hparams, tuner, batch, rng):
    grad_fn = jax.value_and_grad(method.loss, has_aux=True)
    (_, (model_state, metrics)), grads = grad_fn(
        params, model_state, hparams, tuner, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), model_state, opt_state, metrics

  def train_step(state: TrainState, batch: dict):
    args = (state.params, state.model_state, state.opt_state, state.hparams, state.tuner, batch)
    if method.vectorized:
      rngs = jax.vmap(jax.random.fold_in, in_axes=(0, None))(state.rng, state.step)
      update = jax.vmap(member_update, in_axes=(0, 0, 0, 0, None, 0, 0))
      params, model_state, opt_state, metrics = update(*args, rngs)
      metrics = jax.tree.map(jnp.mean, metrics)
    else:
      rng = jax.random.fold_in(state.rng, state.step)
      params, model_state, opt_state, metrics = member_update(*args, rng)
    new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def _mean_metrics(history: list[dict]) -> dict[str, float]:
  stacked = jax.device_get(history)
  # Tune metrics exist only on tune steps: average each key over the steps that have it.
  keys = dict.fromkeys(k for m in stacked for k in m)
  return {k: float(np.mean([m[k] for m in stacked if k in m])) for k in keys}


def _check_finite(history: list[dict], first_step: int, checkpointer: Checkpointer,
                  bound: float) -> None:
  """Stops a diverged run (training/divergence.py's rule), keeping the last good checkpoint."""
  losses = np.asarray(jax.device_get([m['loss'] for m in history]))
  if not np.all(np.isfinite(losses) & (losses <= bound)):
    checkpointer.wait()
    divergence.check_losses(losses, first_step, bound, checkpointer.latest_step(),
                            checkpointer.directory)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_after_steps: int | None = None) -> dict:
  """Trains and evaluates one run in `workdir`; resumes from its latest checkpoint.

  Args:
    config: the run config (configs/default.py).
    workdir: output directory (see workdir.py for what is written).
    stop_after_steps: stop (with a checkpoint) once this many steps are done, as if the process
      had been killed; used by the resume tests. Final evaluation is skipped then.

  Returns:
    The final metrics dict (as written to metrics.json), or {} when stopped early.
  """
  # The whole config is validated and a workdir of another config (or an unusable one) refused
  # first; a new workdir's config is recorded only after the checks below, so a run rejected for
  # bad input leaves no config.json to conflict with.
  config_check.check(config)
  workdir_lib.check_workdir(workdir, config)
  workdir_lib.check_usable(workdir)
  temperature_scaling = results_lib.config_mode(config)  # a bad mode fails now, not after training
  is_main = jax.process_index() == 0
  dataset = load_dataset(config.dataset, config.data)
  method = create_method(config, dataset.info, dataset.num_train)
  mesh = sharding.create_mesh()
  sharding.check_divisible(config.batch_size, 'batch_size')
  sharding.check_divisible(config.eval_batch_size, 'eval_batch_size')

  stream = TrainStream(dataset.train, config.batch_size, method.num_data_orders, config.seed,
                       rows=sharding.process_rows(config.batch_size))
  resuming = workdir_lib.prepare_workdir(workdir, config,
                                         is_writer=jax.process_index() == 0)
  total_steps = num_train_steps(config, stream.steps_per_epoch)
  state, tx, schedule = create_train_state(method, config, stream.steps_per_epoch, mesh)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'),
                              config.max_checkpoints_to_keep)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore(state, set_aside_corrupt=True)
    logging.info('Resumed from step %d in %s', int(state.step), checkpointer.directory)
  elif resuming:
    logging.info('Workdir %s has this config but no checkpoint; starting at step 0', workdir)
  start_step = int(state.step)
  metrics_path = os.path.join(workdir, workdir_lib.METRICS_FILE)
  if start_step >= total_steps and workdir_lib.is_finished(workdir):
    logging.info('Run in %s is complete (step %d); nothing to do.', workdir, start_step)
    checkpointer.close()
    return workdir_lib.read_json(metrics_path)

  writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
  if start_step == 0:
    writer.write_hparams(_flat_config(config))
  logging.info('%s / %s / %s: %d members, %d parameters, %d steps (%d per epoch), %d devices',
               config.method, config.arch, config.dataset, method.num_members,
               count_params(state.params), total_steps, stream.steps_per_epoch,
               jax.device_count())

  train_step = jax.jit(make_train_step(method, tx), donate_argnums=0)
  tune = method.make_tune_step(dataset, mesh) if hasattr(method, 'make_tune_step') else None
  eval_step = predict.make_eval_step(method, mesh)
  eval_sets = predict.eval_sets(dataset)

  def device_batch(step: int) -> dict:
    local = stream.batch(step)
    return {k: sharding.to_global(v, mesh, 1) for k, v in local.items()}

  end_step = total_steps if stop_after_steps is None else min(total_steps, stop_after_steps)
  report = periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.log_every_steps)
  history: list[dict] = []
  history_start = start_step
  t0, seconds_before = time.time(), float(state.train_seconds)
  bound = divergence.loss_bound(dataset.info.num_classes)
  sigint = interrupts.SigintStop()

  def save(state: TrainState) -> TrainState:
    _check_finite(history, history_start, checkpointer, bound)
    # Same dtype (not weak) and sharding as before, else the train step is compiled again; the
    # value must be the same on every process to be put on a replicated sharding.
    seconds = np.float32(seconds_before + time.time() - t0)
    if jax.process_count() > 1:
      seconds = multihost_utils.broadcast_one_to_all(seconds)
    state = state.replace(train_seconds=jax.device_put(seconds, state.train_seconds.sharding))
    checkpointer.save(int(state.step), state)
    return state

  for step, batch in sigint.wrap(zip(range(start_step, end_step),
                                     prefetch(device_batch, start_step, end_step), strict=True)):
    state, step_metrics = train_step(state, batch)
    if tune is not None:
      state, tune_metrics = tune(state, step)
      if tune_metrics:
        step_metrics = {**step_metrics, **tune_metrics}
    history.append(step_metrics)
    done = step + 1
    report(done)
    if done % config.log_every_steps == 0 or done == end_step:
      _check_finite(history, history_start, checkpointer, bound)
      summary = _mean_metrics(history)
      summary['learning_rate'] = float(schedule(done))
      writer.write_scalars(done, {f'train/{k}': v for k, v in summary.items()})
      if tune is not None and hasattr(method, 'tuner_summaries'):
        writer.write_scalars(done, method.tuner_summaries(state))
      history, history_start = [], done
    if config.eval_every_steps > 0 and done % config.eval_every_steps == 0 and done < end_step:
      results, _ = predict.evaluate(
          eval_step, state, {'validation': dataset.validation}, config.eval_batch_size, mesh,
          config.max_eval_examples, temperature_scaling)
      writer.write_scalars(done, results_lib.scalar_summaries(results))
    if done % config.checkpoint_every_steps == 0 or done == end_step:
      state = save(state)

  if history:
    _check_finite(history, history_start, checkpointer, bound)
  if sigint.requested:  # Ctrl-C: a checkpoint of the step reached, then one line (runs/cli.py)
    state = save(state)
    checkpointer.close()
    writer.flush()
    raise interrupts.Interrupted(
        f'Stopped on Ctrl-C at step {int(state.step)} of {total_steps}; its checkpoint is in '
        f'{checkpointer.directory}. Rerun the same command to resume.')
  checkpointer.wait()
  if end_step < total_steps:
    checkpointer.close()
    writer.flush()
    return {}

  results, predictions = predict.evaluate(
      eval_step, state, eval_sets, config.eval_batch_size, mesh, config.max_eval_examples,
      temperature_scaling)
  results['num_params'] = count_params(state.params)
  results['train_seconds'] = float(state.train_seconds)
  results[workdir_lib.FINISHED_KEY] = total_steps  # what makes the run finished (is_finished)
  writer.write_scalars(total_steps, results_lib.scalar_summaries(
      {k: v for k, v in results.items() if isinstance(v, dict)}))
  if tune is not None and hasattr(method, 'final_hyperparameters'):
    # The learned λ distributions: what a hyper-batch run found, next to what it scored.
    results['hyperparameters'] = method.final_hyperparameters(state)
  if is_main:
    for name, (logits, labels) in predictions.items():
      workdir_lib.write_predictions(workdir, name, logits, labels)
    workdir_lib.write_json(metrics_path, results)
  writer.flush()
  checkpointer.close()
  results_lib.log_results(results)
  return results


def _flat_config(config: ml_collections.ConfigDict) -> dict:
  flat = {}
  for key, value in workdir_lib.flatten_dict(workdir_lib.config_to_dict(config)).items():
    flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
  return flat
