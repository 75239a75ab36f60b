"""The training loop: init or restore, jitted train (and tune) steps, periodic eval/log/checkpoint.

`train_and_evaluate(config, workdir)` is the single entry point used by `main.py`, the scripts and
the tests. The run's parts (dataset, method, mesh, train state, checkpoints) come from
training/setup.py, the steps from training/steps.py. The train step is compiled once and runs
SPMD over the `('data',)` mesh: batches are sharded, the state replicated. Methods with a tuner
(hyper-batch ensembles) add a separately jitted tune step on validation batches after the train
steps their `tune_index` names.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils

from hyper_ensembles.data.streams import TrainStream, prefetch
from hyper_ensembles.evaluation import predict
from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.runs import interrupts
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.training import config_check, divergence, setup, sharding, steps
from hyper_ensembles.training.checkpoints import Checkpointer
from hyper_ensembles.training.state import TrainState, count_params


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
    workdir: output directory (see runs/workdir.py for what is written).
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
  parts = setup.build_run(config)
  stream = TrainStream(parts.dataset.train, config.batch_size, parts.method.num_data_orders,
                       config.seed, rows=sharding.process_rows(config.batch_size))
  resuming = workdir_lib.prepare_workdir(workdir, config,
                                         is_writer=jax.process_index() == 0)
  state, tx, schedule = setup.init_state(parts)
  checkpointer = setup.open_checkpointer(config, workdir)
  state = _restore_or_start(state, checkpointer, workdir, resuming)
  if int(state.step) >= parts.total_steps and workdir_lib.is_finished(workdir):
    logging.info('Run in %s is complete (step %d); nothing to do.', workdir, int(state.step))
    checkpointer.close()
    return workdir_lib.read_json(os.path.join(workdir, workdir_lib.METRICS_FILE))

  loop = _Loop(parts=parts, writer=_open_writer(parts, workdir, state), checkpointer=checkpointer,
               schedule=schedule, eval_step=predict.make_eval_step(parts.method, parts.mesh),
               temperature_scaling=temperature_scaling)
  end_step = parts.total_steps
  if stop_after_steps is not None:
    end_step = min(end_step, stop_after_steps)
  state = loop.train(state, stream, tx, end_step)
  checkpointer.wait()
  if loop.interrupted:  # Ctrl-C: the step reached is checkpointed; one line (runs/cli.py)
    checkpointer.close()
    loop.writer.flush()
    raise interrupts.Interrupted(
        f'Stopped on Ctrl-C at step {int(state.step)} of {parts.total_steps}; its checkpoint is '
        f'in {checkpointer.directory}. Rerun the same command to resume.')
  if end_step < parts.total_steps:
    checkpointer.close()
    loop.writer.flush()
    return {}
  results = loop.final_evaluation(state, workdir)
  loop.writer.flush()
  checkpointer.close()
  results_lib.log_results(results)
  return results


def _restore_or_start(state: TrainState, checkpointer: Checkpointer, workdir: str,
                      resuming: bool) -> TrainState:
  """The latest checkpoint's state if there is one, else the initial `state`."""
  if checkpointer.latest_step() is not None:
    # A checkpoint that cannot be read is set aside (renamed, never deleted) with a warning; the
    # newest intact one is restored.
    state = checkpointer.restore(state, set_aside_corrupt=True)
    logging.info('Resumed from step %d in %s', int(state.step), checkpointer.directory)
  elif resuming:
    logging.info('Workdir %s has this config but no checkpoint; starting at step 0', workdir)
  return state


def _open_writer(parts: setup.RunParts, workdir: str, state: TrainState
                 ) -> metric_writers.MetricWriter:
  """The run's metric writer (TensorBoard on process 0); logs what the run is about to do."""
  config = parts.config
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() != 0)
  if int(state.step) == 0:
    writer.write_hparams(_flat_config(config))
  logging.info('%s / %s / %s: %d members, %d parameters, %d steps (%d per epoch), %d devices',
               config.method, config.arch, config.dataset, parts.method.num_members,
               count_params(state.params), parts.total_steps, parts.steps_per_epoch,
               jax.device_count())
  return writer


class _History:
  """Train metrics of the steps since the last log, and the step they start after."""

  def __init__(self, start: int):
    self.metrics: list[dict] = []
    self.start = start

  def check_finite(self, checkpointer: Checkpointer, bound: float) -> None:
    if self.metrics:
      _check_finite(self.metrics, self.start, checkpointer, bound)

  def pop_mean(self, done: int) -> dict[str, float]:
    """Mean of each metric so far; the next history starts after step `done`."""
    summary = _mean_metrics(self.metrics)
    self.metrics, self.start = [], done
    return summary


@dataclasses.dataclass
class _Loop:
  """What the loop writes to and evaluates with, beside the state it carries."""

  parts: setup.RunParts
  writer: metric_writers.MetricWriter
  checkpointer: Checkpointer
  schedule: optax.Schedule
  eval_step: Callable  # predict.make_eval_step's jitted prediction
  temperature_scaling: str
  interrupted: bool = False  # set when Ctrl-C stopped `train` early

  def train(self, state: TrainState, stream: TrainStream, tx: optax.GradientTransformation,
            end_step: int) -> TrainState:
    """Train (and tune) steps from `state.step` to `end_step`; logs, evaluates, checkpoints."""
    config, method, mesh = self.parts.config, self.parts.method, self.parts.mesh
    train_step = steps.jit_train_step(method, tx)
    tune = steps.make_tune_step(method, self.parts.dataset.validation, config.seed, mesh)
    start_step = int(state.step)
    report = periodic_actions.ReportProgress(
        num_train_steps=self.parts.total_steps, writer=self.writer,
        every_steps=config.log_every_steps)
    history = _History(start_step)
    clock = (time.time(), float(state.train_seconds))
    bound = divergence.loss_bound(self.parts.dataset.info.num_classes)
    sigint = interrupts.SigintStop()

    def device_batch(step: int) -> dict:
      return {k: sharding.to_global(v, mesh, 1) for k, v in stream.batch(step).items()}

    for step, batch in sigint.wrap(zip(range(start_step, end_step),
                                       prefetch(device_batch, start_step, end_step), strict=True)):
      state, step_metrics = train_step(state, batch)
      if tune is not None:
        state, tune_metrics = tune(state, step)
        if tune_metrics:
          step_metrics = {**step_metrics, **tune_metrics}
      history.metrics.append(step_metrics)
      done = step + 1
      report(done)
      if done % config.log_every_steps == 0 or done == end_step:
        history.check_finite(self.checkpointer, bound)
        self._log_train(state, done, history.pop_mean(done))
      if config.eval_every_steps > 0 and done % config.eval_every_steps == 0 and done < end_step:
        self._evaluate_validation(state, done)
      if done % config.checkpoint_every_steps == 0 or done == end_step:
        history.check_finite(self.checkpointer, bound)
        state = self._save(state, clock)
    history.check_finite(self.checkpointer, bound)
    if sigint.requested:
      self.interrupted = True
      if self.checkpointer.latest_step() != int(state.step):  # unless the loop just saved it
        state = self._save(state, clock)
    return state

  def _log_train(self, state: TrainState, done: int, summary: dict[str, float]) -> None:
    summary['learning_rate'] = float(self.schedule(done))
    self.writer.write_scalars(done, {f'train/{k}': v for k, v in summary.items()})
    tuner = self.parts.method.tuner_summaries(state)
    if tuner:
      self.writer.write_scalars(done, tuner)

  def _evaluate_validation(self, state: TrainState, done: int) -> None:
    config = self.parts.config
    results, _ = predict.evaluate(
        self.eval_step, state, {'validation': self.parts.dataset.validation},
        config.eval_batch_size, self.parts.mesh, config.max_eval_examples,
        self.temperature_scaling)
    self.writer.write_scalars(done, results_lib.scalar_summaries(results))

  def _save(self, state: TrainState, clock: tuple[float, float]) -> TrainState:
    """Checkpoints `state` with the wall-clock seconds trained so far (`clock`: the time this
    session started and the seconds the state had then)."""
    t0, seconds_before = clock
    # Same dtype (not weak) and sharding as before, else the train step is compiled again; the
    # value must be the same on every process to be put on a replicated sharding.
    seconds = np.float32(seconds_before + time.time() - t0)
    if jax.process_count() > 1:
      seconds = multihost_utils.broadcast_one_to_all(seconds)
    state = state.replace(train_seconds=jax.device_put(seconds, state.train_seconds.sharding))
    self.checkpointer.save(int(state.step), state)
    return state

  def final_evaluation(self, state: TrainState, workdir: str) -> dict:
    """Evaluates every set, writes metrics.json and the predictions (process 0); returns it."""
    config, method = self.parts.config, self.parts.method
    results, predictions = predict.evaluate(
        self.eval_step, state, predict.eval_sets(self.parts.dataset), config.eval_batch_size,
        self.parts.mesh, config.max_eval_examples, self.temperature_scaling)
    results['num_params'] = count_params(state.params)
    results['train_seconds'] = float(state.train_seconds)
    results[workdir_lib.FINISHED_KEY] = self.parts.total_steps  # makes the run finished
    self.writer.write_scalars(self.parts.total_steps, results_lib.scalar_summaries(
        {k: v for k, v in results.items() if isinstance(v, dict)}))
    learned = method.final_hyperparameters(state)
    if learned is not None:
      # The learned λ distributions: what a hyper-batch run found, next to what it scored.
      results['hyperparameters'] = learned
    if jax.process_index() == 0:
      for name, (logits, labels) in predictions.items():
        workdir_lib.write_predictions(workdir, name, logits, labels)
      workdir_lib.write_json(os.path.join(workdir, workdir_lib.METRICS_FILE), results)
    return results


def _flat_config(config: ml_collections.ConfigDict) -> dict:
  flat = {}
  for key, value in workdir_lib.flatten_dict(workdir_lib.config_to_dict(config)).items():
    flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
  return flat
