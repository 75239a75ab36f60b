"""Evaluation without training: `python -m hyper_ensembles.evaluate --workdir=DIR`.

Recomputes `DIR/metrics.json` through the one evaluation path (results.metrics_from_predictions,
the function training uses) from what a finished run left behind:

- Every set with saved predictions (`DIR/predictions/<set>.npz`) is re-scored, always all of them,
  so that one fitted temperature holds for the whole file.
- `--sets=a,b,...` (names or shell patterns such as `corrupt_*`) adds sets: those without saved
  predictions are predicted from the latest checkpoint (the run's state restored by the training
  code's factories, evaluated by predict.predict_split) and their predictions saved too;
  `--from_checkpoint` re-predicts the named sets even when they are saved. Sets the recorded
  config does not produce are asked for with `--override=data.<field>=<value>` (e.g.
  `--override=data.corruptions=all --sets='corrupt_*'`); fields that change the train /
  validation / test split itself are refused.
- `--temperature_scaling=ensemble|per_member|none` overrides the run's config (default: the run's
  `config.evaluation.temperature_scaling`, 'ensemble' for runs recorded before it existed).

Nothing is lost: metrics.json is rewritten as the old file updated with the new numbers (entries
of sets without predictions are kept; the corruption aggregates are recomputed over all corrupted
sets; tempered entries are replaced as a whole, since they depend on the new temperature), and the
previous file is first copied to `metrics.json.bak-<YYYYmmdd-HHMMSS>`. `evaluate` in metrics.json
records when, with which overrides and from which source each set came.

Hyper-deep pipeline directories (config method `hyper_deep`) have no checkpoint of their own: they
are re-scored from their saved predictions only (the final ensemble's picks; identical picks are
merged back into weights, as the pipeline scores them); `baselines` are kept as they are.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import ml_collections
import numpy as np
from absl import app, flags, logging

from hyper_ensembles.data import ood
from hyper_ensembles.evaluation import predict
from hyper_ensembles.evaluation import results as results_lib
from hyper_ensembles.runs import cli, overrides
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.training import setup

# Methods whose directory is a pipeline of runs rather than one run with a checkpoint.
PIPELINE_METHODS = ('hyper_deep',)
# Data fields that define the train / validation / test split: overriding them would score a
# different validation or test set under the same name.
SPLIT_FIELDS = ('validation_fraction', 'split_seed', 'train_on_validation')
OFF = ('none', 'off', '')
RECORD_KEY = 'evaluate'


def parse_override(text: str) -> tuple[str, object]:
  """'data.corruptions=all' → ('corruptions', 'all'); values are Python literals or strings."""
  key, sep, value = text.partition('=')
  key = key.strip()
  if not sep or not key.startswith('data.'):
    raise ValueError(f'--override must be data.<field>=<value>, got {text!r}')
  field = key[len('data.'):]
  if field in SPLIT_FIELDS:
    raise ValueError(f'--override cannot change data.{field}: it defines the validation / test '
                     'split the saved predictions and the temperature belong to')
  return field, overrides.parse_value(value)


def run_config(workdir: str, data_overrides: dict | None = None) -> ml_collections.ConfigDict:
  """The run's recorded config with `data` fields overridden (unknown fields name the valid)."""
  config = workdir_lib.read_config(workdir)
  if not data_overrides:
    return config
  config = config.unlock()
  for field, value in data_overrides.items():
    if field not in config.data:
      raise ValueError(f'Unknown data field {field!r}; choose one of: '
                       f'{", ".join(sorted(k for k in config.data if k not in SPLIT_FIELDS))}')
    config.data[field] = value
  return config.lock()


def _checkpoint_dir(workdir: str) -> str:
  directory = setup.checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{workdir} has no checkpoints/ directory to evaluate new sets from')
  return directory


def _restore(config: ml_collections.ConfigDict, workdir: str, dataset):
  """(eval_step, state, mesh) of the latest checkpoint, built by the training code's factory."""
  parts = setup.build_run(config, dataset)
  state = setup.restore_latest(parts, workdir)
  if int(state.step) < parts.total_steps:
    raise ValueError(_unfinished(
        workdir, f'its newest intact checkpoint is at step {int(state.step)} of '
        f'{parts.total_steps}'))
  return predict.make_eval_step(parts.method, parts.mesh), state, parts.mesh


def _unfinished(workdir: str, why: str) -> str:
  return (f'{workdir} holds an unfinished run ({why}); evaluate scores finished runs only. Finish '
          f'it first: hyper_ensembles.main --config=configs/saved.py:'
          f'{os.path.join(workdir, workdir_lib.CONFIG_FILE)} --workdir={workdir} resumes it.')


def _expand(patterns: list[str], available: list[str]) -> tuple[list[str], list[str]]:
  """(names matched by the patterns, in order; patterns that match nothing)."""
  names, unmatched = [], []
  for pattern in patterns:
    hits = fnmatch.filter(available, pattern)
    unmatched += [] if hits else [pattern]
    names += [h for h in hits if h not in names]
  return names, unmatched


def _distinct_members(predictions: dict[str, tuple]) -> tuple[dict[str, tuple], np.ndarray]:
  """Merges members with identical logits on every set: (predictions, weights = counts)."""
  names = sorted(predictions)
  keys = [b''.join(np.ascontiguousarray(predictions[n][0][k]).tobytes() for n in names)
          for k in range(predictions[names[0]][0].shape[0])]
  first: dict[bytes, int] = {}
  for k, key in enumerate(keys):
    first.setdefault(key, k)
  keep = sorted(first.values())
  counts = np.array([keys.count(keys[k]) for k in keep], dtype=np.float64)
  return {n: (logits[keep], labels) for n, (logits, labels) in predictions.items()}, counts


def evaluate_workdir(workdir: str, sets: list[str] | None = None,
                     temperature_scaling: str | None = None, from_checkpoint: bool = False,
                     data_overrides: dict | None = None) -> dict:
  """Recomputes and rewrites `workdir/metrics.json` (see the module docstring); returns it.

  Args:
    workdir: a run directory (or a hyper-deep pipeline directory).
    sets: names or shell patterns of sets to include besides the saved ones.
    temperature_scaling: 'ensemble', 'per_member', '' / 'none' (off); None: the run's config.
    from_checkpoint: predict the named `sets` from the checkpoint even when they are saved.
    data_overrides: `{field: value}` over the recorded `config.data` (new evaluation sets).

  Raises:
    FileNotFoundError: no such workdir, no config.json, or no checkpoint when one is needed.
    ValueError: unknown set, data field or temperature mode (the message names the choices).
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'Workdir {workdir} does not exist')
  config = run_config(workdir, data_overrides)
  finished = _check_scorable(workdir, config)
  if temperature_scaling is None:
    mode = results_lib.config_mode(config)
  else:
    mode = results_lib.check_mode('' if temperature_scaling in OFF else temperature_scaling)
  saved = workdir_lib.saved_prediction_sets(workdir)
  metrics_path = os.path.join(workdir, workdir_lib.METRICS_FILE)
  old = workdir_lib.read_json(metrics_path) if os.path.exists(metrics_path) else {}
  requested, model = _sets_and_model(workdir, config, saved, sets, from_checkpoint, finished, old)

  names = list(dict.fromkeys([*saved, *requested]))
  if mode and results_lib.FIT_SET not in names:
    names.append(results_lib.FIT_SET)
  if any(ood.is_ood_set(n) for n in names) and 'test' not in names:
    names.append('test')
  to_predict = [n for n in names if n not in saved or (from_checkpoint and n in requested)]
  if to_predict and model is None:
    raise FileNotFoundError(f'{workdir} has no saved predictions of {to_predict} and no checkpoint')
  predictions = {n: workdir_lib.read_predictions(workdir, n) for n in names if n not in to_predict}
  extra = {} if model is None else _predict_from_model(workdir, config, model, to_predict,
                                                       predictions, finished)
  if not predictions:
    raise FileNotFoundError(f'{workdir} has no saved predictions and no sets were requested')

  weights = None
  if config.method in PIPELINE_METHODS:
    predictions, weights = _distinct_members(predictions)
  results = results_lib.metrics_from_predictions(predictions, weights, mode)
  merged = merge(old, results, extra)
  merged[RECORD_KEY] = {
      'time': time.strftime('%Y-%m-%d %H:%M:%S'), 'temperature_scaling': mode,
      'from_checkpoint': to_predict, 'from_saved_predictions': sorted(set(names) - set(to_predict)),
      'data_overrides': {k: list(v) if isinstance(v, tuple) else v
                         for k, v in (data_overrides or {}).items()}}
  write_with_backup(metrics_path, merged)
  results_lib.log_results(merged)
  return merged


def _check_scorable(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Whether training finished; raises if the run cannot be scored at all.

  A run whose metrics.json does not say training finished is scored only if its latest checkpoint
  is at the final step (checked in _restore): a half-trained model must never get a metrics.json
  that looks like a result.
  """
  finished = config.method in PIPELINE_METHODS or workdir_lib.is_finished(workdir)
  if not finished and not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise ValueError(_unfinished(workdir, 'no checkpoint and no final metrics.json'))
  return finished


def _sets_and_model(workdir: str, config: ml_collections.ConfigDict, saved: list[str],
                    sets: list[str] | None, from_checkpoint: bool, finished: bool, old: dict
                    ) -> tuple[list[str], tuple | None]:
  """(the sets asked for, resolved to names; the restored model and the dataset's splits, or
  None when saved predictions suffice)."""
  pipeline = config.method in PIPELINE_METHODS
  patterns = [p.strip() for p in sets or [] if p.strip()]
  # Which sets come from where: saved predictions unless absent (or re-predicting is asked for).
  requested, unmatched = _expand(patterns, saved)
  needs_model = bool(unmatched) or (from_checkpoint and bool(requested))
  if not pipeline and ('num_params' not in old or 'train_seconds' not in old):
    needs_model |= os.path.isdir(setup.checkpoint_dir(workdir))
  needs_model |= not finished
  if not needs_model:
    if unmatched:
      raise ValueError(f'Unknown evaluation set(s) {unmatched} for {workdir}; choose from: '
                       f'{", ".join(saved)}')
    return requested, None
  if pipeline:
    raise ValueError(
        f'{workdir} is a {config.method} pipeline directory: it is evaluated from its saved '
        f'predictions only ({", ".join(saved) or "none"}); {", ".join(unmatched) or "--sets"} '
        'would need a model. Evaluate its member runs, or re-run the pipeline with the new sets '
        'in its config.')
  from hyper_ensembles.data.registry import load_dataset
  _checkpoint_dir(workdir)  # before loading any data
  dataset = load_dataset(config.dataset, config.data)
  splits = predict.eval_sets(dataset)
  new, still_unmatched = _expand(unmatched, list(splits))
  if still_unmatched:
    raise ValueError(
        f'Unknown evaluation set(s) {still_unmatched} for {workdir}; choose from: '
        f'{", ".join(dict.fromkeys([*saved, *splits]))} (more with '
        '--override=data.corruptions=... or data.ood_datasets=...)')
  requested += [n for n in new if n not in requested]
  return requested, (_restore(config, workdir, dataset), splits)


def _predict_from_model(workdir: str, config: ml_collections.ConfigDict, model: tuple,
                        to_predict: list[str], predictions: dict, finished: bool) -> dict:
  """Predicts `to_predict` into `predictions` (and their files); returns what the checkpoint adds
  to metrics.json."""
  from hyper_ensembles.training.state import count_params
  (eval_step, state, mesh), splits = model
  for name in to_predict:
    logging.info('Predicting %s from the checkpoint (%d examples)', name, len(splits[name]))
    predictions[name] = predict.predict_split(
        eval_step, state, splits[name], config.eval_batch_size, mesh, config.max_eval_examples)
    workdir_lib.write_predictions(workdir, name, *predictions[name])
  extra = {'num_params': count_params(state.params), 'train_seconds': float(state.train_seconds)}
  if not finished:  # _restore found the checkpoint of the final step: training did finish
    extra[workdir_lib.FINISHED_KEY] = int(state.step)
  return extra


def merge(old: dict, results: dict, extra: dict) -> dict:
  """The old metrics.json updated with new per-set results; aggregates recomputed over all.

  Tempered entries and the temperature record of the old file are dropped as a whole (they belong
  to the old temperature); so are the old corruption aggregates (recomputed here). Other entries of
  the old file (sets without predictions, num_params, baselines, ...) are kept; `extra` fills
  keys the old file lacks.
  """
  stale = set(results_lib.corruption_aggregates(old)) | {results_lib.RECORD_KEY}
  merged = {k: v for k, v in old.items() if k not in stale and not results_lib.is_tempered_key(k)}
  fresh_aggregates = set(results_lib.corruption_aggregates(results))
  merged.update({k: v for k, v in results.items() if k not in fresh_aggregates})
  kept = [k for k in old if k in merged and k not in results and isinstance(old[k], dict)
          and ('nll' in old[k] or 'auroc_max_prob' in old[k])]
  if kept:
    logging.warning('Kept the old entries of %s: no saved predictions to re-score them', kept)
  merged.update(results_lib.corruption_aggregates(merged))
  for key, value in extra.items():
    merged.setdefault(key, value)
  return merged


def write_with_backup(path: str, metrics: dict) -> str | None:
  """Writes metrics.json; a previous, different file is first copied to `<path>.bak-<time>`."""
  backup = None
  if os.path.exists(path) and workdir_lib.read_json(path) != metrics:
    backup = f'{path}.bak-{time.strftime("%Y%m%d-%H%M%S")}'
    suffix = 1
    while os.path.exists(backup):
      backup, suffix = f'{path}.bak-{time.strftime("%Y%m%d-%H%M%S")}-{suffix}', suffix + 1
    shutil.copy2(path, backup)
    logging.info('Previous %s kept as %s', os.path.basename(path), backup)
  workdir_lib.write_json(path, metrics)
  return backup


def define_flags() -> dict:
  """The command line's flags. Defined only when this module runs as the program (see below), so
  importing it as a library (tests, scripts with their own --workdir) defines no flags."""
  return {
      'workdir': flags.DEFINE_string('workdir', None,
                                     'Run directory (or hyper-deep pipeline DIR).'),
      'sets': flags.DEFINE_list(
          'sets', [], 'Evaluation sets (names or shell patterns, e.g. corrupt_*) to include '
          'besides the saved ones; sets without saved predictions are predicted from the '
          'checkpoint.'),
      'temperature_scaling': flags.DEFINE_enum(
          'temperature_scaling', None, [*results_lib.MODES, 'none'],
          "Override the run's config.evaluation.temperature_scaling."),
      'from_checkpoint': flags.DEFINE_bool(
          'from_checkpoint', False, 'Predict the --sets from the checkpoint even when saved.'),
      'override': flags.DEFINE_multi_string(
          'override', [], 'data.<field>=<value> over the recorded data config, for new '
          'evaluation sets (e.g. data.corruptions=all); repeat the flag for several fields.'),
      'traceback': flags.DEFINE_bool(
          'traceback', False, 'Show the full traceback for input errors too.'),
  }


def main(argv, cli_flags: dict):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  f = {name: holder.value for name, holder in cli_flags.items()}
  cli.setup_logging()
  cli.run_reporting_user_errors(lambda: evaluate_workdir(
      f['workdir'], f['sets'], f['temperature_scaling'], f['from_checkpoint'],
      dict(parse_override(o) for o in f['override'])), f['traceback'])


if __name__ == '__main__':
  _cli_flags = define_flags()
  flags.mark_flags_as_required(['workdir'])
  app.run(functools.partial(main, cli_flags=_cli_flags), flags_parser=cli.parse_flags)
