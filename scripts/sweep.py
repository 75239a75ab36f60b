"""The hyper-deep random search as a sweep: print its runs as command lines, or run them.

    # Plan the pipeline in DIR and print one `hyper_ensembles.main` command per run:
    python scripts/sweep.py --config=configs/default.py:method=hyper_deep,dataset=fashion_mnist \
        --workdir=DIR --print
    # ... or run them here, one after another (finished runs are skipped):
    python scripts/sweep.py --config=... --workdir=DIR --run [--only=0,3] [--stages=pool]
    # ... or in parallel on Ray: a Ray started here (all cores, 2 runs at a time), or a cluster:
    python scripts/sweep.py --config=... --workdir=DIR --run --launcher=ray --max_concurrent=2
    python scripts/sweep.py --config=... --workdir=DIR --run --launcher=ray --ray_address=auto \
        --gpus_per_run=1
    # then selection, stratification and evaluation find the runs' predictions in DIR:
    python scripts/hyper_deep_ensemble.py --config=... --workdir=DIR

A sweep file is a JSON list of `{"workdir": <relative to DIR>, "overrides": {<dotted config key>:
<value>}, "stage": <optional label>}`. Without `--sweep_file` the sweep is the pipeline's own
DIR/sweep.json (written on planning): every run that does not depend on a selection — the pool
chunks, the fixed-init pool and the deep baseline — each a `deep` run whose `member_hparams`,
`seed` and `init_seed` define its members. Each printed command writes into the run directory the
pipeline looks in, so the runs can be spread over machines and their directories copied back into
DIR. With `--sweep_file` any list of overrides runs the same way. The `--config` flag (and any
`--config.<key>=<value>` overrides, given in the `=` form) must be the pipeline's own: they are
forwarded to every command.

`--launcher=ray` (hyper_ensembles/launching/registry.py, ray_launcher.py) trains each run as a
subprocess in its
own directory, which also gets the run's launch.log. A failed run is reported with its workdir and
log while the others go on, and the sweep then exits with status 1; re-running it skips the runs
that finished and resumes the others from their checkpoints.
"""

from __future__ import annotations

import os
import shlex
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags
from ml_collections import config_flags

from hyper_ensembles import hyper_deep
from hyper_ensembles.launching import jobs as jobs_lib
from hyper_ensembles.launching import registry
from hyper_ensembles.runs import cli
from hyper_ensembles.runs import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The pipeline config, e.g. configs/default.py:method=hyper_deep',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'The pipeline directory DIR.')
_SWEEP_FILE = flags.DEFINE_string(
    'sweep_file', None, 'A JSON sweep file; default: plan the pipeline and use DIR/sweep.json.')
_PRINT = flags.DEFINE_bool('print', False, 'Print one command line per run.')
_RUN = flags.DEFINE_bool('run', False, 'Run the entries here, one after another.')
_ONLY = flags.DEFINE_list('only', None, 'Indices of the entries to print or run (default all).')
_STAGES = flags.DEFINE_list('stages', None, 'Only entries of these stages (pool, fixed_init, ...).')
_PYTHON = flags.DEFINE_string('python', 'python', 'Interpreter in the printed command lines.')
_LAUNCH = registry.define_flags()
flags.mark_flags_as_required(['config', 'workdir'])


def format_value(value) -> str:
  """A config value as `--config.<key>=` parses it back (tuples as Python literals)."""
  if isinstance(value, list | tuple):
    return repr(tuple(value))
  if isinstance(value, bool):
    return 'true' if value else 'false'
  return str(value)


def config_args(argv: list[str]) -> list[str]:
  """The `--config=...` and `--config.<key>=<value>` arguments of this invocation, in order."""
  return [a for a in argv if a.startswith('--config=') or a.startswith('--config.')]


def command_line(entry: dict, workdir: str, base_args: list[str], python: str = 'python') -> str:
  """The `hyper_ensembles.main` command that trains one sweep entry."""
  overrides = entry['overrides']
  # An entry's own value wins over the same key given on this command line.
  args = [a for a in base_args
          if not (a.startswith('--config.') and a[len('--config.'):].split('=')[0] in overrides)]
  args += [f'--config.{key}={format_value(value)}' for key, value in overrides.items()]
  args.append(f'--workdir={os.path.join(workdir, entry["workdir"])}')
  return ' '.join([python, '-m', 'hyper_ensembles.main', *map(shlex.quote, args)])


def load_entries(config, workdir: str, sweep_file: str | None) -> list[dict]:
  if sweep_file is None:
    _, plan = hyper_deep.plan_pipeline(config, workdir)
    return plan.sweep_entries()
  entries = workdir_lib.read_json(sweep_file)
  if not isinstance(entries, list) or not all(
      isinstance(e, dict) and 'workdir' in e and 'overrides' in e for e in entries):
    raise ValueError(f'{sweep_file}: expected a JSON list of {{"workdir", "overrides"}} entries')
  return entries


def select_entries(entries: list[dict], only: list[str] | None, stages: list[str] | None
                   ) -> list[tuple[int, dict]]:
  chosen = list(enumerate(entries))
  if only:
    bad = [i for i in only if not i.isdigit() or int(i) >= len(entries)]
    if bad:
      raise ValueError(f'--only={",".join(bad)}: not entry indices; valid: 0 to {len(entries) - 1}')
    wanted = {int(i) for i in only}
    chosen = [(i, e) for i, e in chosen if i in wanted]
  if stages:
    chosen = [(i, e) for i, e in chosen if e.get('stage') in stages]
  return chosen


def run_entries(config, workdir: str, entries: list[tuple[int, dict]],
                options: jobs_lib.LaunchOptions | None = None) -> list[jobs_lib.Outcome]:
  """Trains each entry in its directory with the launcher `options` names (local when None).

  Finished runs are skipped and unfinished ones resume (train.py). The local launcher stops at the
  first error; the Ray one trains the others and then raises jobs_lib.RunsFailedError.
  """
  jobs = [jobs_lib.Job(name=f'[{i}] {entry["workdir"]}',
                         workdir=os.path.join(workdir, entry['workdir']),
                         config=hyper_deep.apply_overrides(config, entry['overrides']))
          for i, entry in entries]
  with registry.create(options, echo=lambda message: print(message, flush=True)) as launcher:
    return launcher.run(jobs)


def sweep() -> None:
  entries = select_entries(load_entries(_CONFIG.value, _WORKDIR.value, _SWEEP_FILE.value),
                           _ONLY.value, _STAGES.value)
  if _PRINT.value:
    base_args = config_args(sys.argv[1:])
    for _, entry in entries:
      print(command_line(entry, _WORKDIR.value, base_args, _PYTHON.value))
  if _RUN.value:
    try:
      run_entries(_CONFIG.value, _WORKDIR.value, entries, registry.options_from_flags(_LAUNCH))
    except jobs_lib.RunsFailedError as e:
      sys.exit(str(e))


def main() -> None:
  if not (_PRINT.value or _RUN.value):
    raise app.UsageError('Choose --print or --run (or both).')
  sweep()


if __name__ == '__main__':
  cli.run_app(main, quiet=True)
