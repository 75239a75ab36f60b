"""What every command-line entry point shares: quiet library logging and one-line user errors.

`main.py` (training), `evaluate.py` (evaluation only) and the scripts report a mistake the user can
fix from the message alone — an unknown name or config key, a missing file, a value outside its
domain, a workdir of another config or one that cannot be written, a diverged run, an unreadable
checkpoint, Ctrl-C — as one `error (<type>): <message>` line on stderr and a non-zero exit status
(1; 130 for Ctrl-C); `--traceback` (where a command has it) shows the full traceback instead.

Two places catch them: `parse_flags` (give it to `app.run(main, flags_parser=cli.parse_flags)`)
for what goes wrong while absl parses the command line, which is where ml_collections loads the
`--config=file:args` file and applies `--config.<key>=<value>`; and `run_reporting_user_errors`
around the command's work.
"""

from __future__ import annotations

import argparse
import difflib
import logging as logging_std
import os
import sys
from collections.abc import Callable, Sequence

from absl import app, flags, logging

from hyper_ensembles.runs.interrupts import Interrupted

# What a user can fix from the message alone (unknown names, missing files, bad sizes, a workdir
# written by another config — ValueErrors, as are validation.ConfigError, workdir.WorkdirError and
# checkpoints.CheckpointError — and a diverged run, a FloatingPointError).
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


class QuietLibraries(logging_std.Filter):
  """Keeps INFO chatter of orbax / TF / XLA start-up off the console; warnings still pass."""

  NOISY = ('orbax', 'tensorflow', 'xla_bridge', 'tensorstore')

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or not any(
        part in record.pathname for part in self.NOISY)


def setup_logging() -> None:
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(QuietLibraries())


TRACEBACK_HELP = 'Show the full traceback for input errors too.'


def define_traceback_flag() -> flags.FlagHolder[bool]:
  """`--traceback` of an absl entry point, for `run_reporting_user_errors`."""
  # Listed by `--help` with the calling script's own flags (absl keys a script's flags by argv[0]).
  return flags.DEFINE_bool('traceback', False, TRACEBACK_HELP, module_name=sys.argv[0])


def add_traceback_argument(parser: argparse.ArgumentParser) -> None:
  """`--traceback` of an argparse entry point, for `run_reporting_user_errors`."""
  parser.add_argument('--traceback', action='store_true', help=TRACEBACK_HELP)


def error_line(e: BaseException) -> str:
  """`error (<type>): <message>` on one line (a message's own line breaks become spaces)."""
  message = ' '.join(str(e).split()) if str(e) else ''
  return f'error ({type(e).__name__}): {message}'


def _exit(e: BaseException, status: int = 1) -> None:
  logging.flush()
  print(error_line(e), file=sys.stderr, flush=True)
  sys.exit(status)


def run_reporting_user_errors(fn: Callable[[], object], traceback: bool = False) -> object:
  """Runs `fn`; a user error ends the process with one `error (...)` line unless `traceback`."""
  try:
    return fn()
  except Interrupted as e:
    if traceback:
      raise
    _exit(e, INTERRUPTED_STATUS)
  except KeyboardInterrupt:
    if traceback:
      raise
    _exit(KeyboardInterrupt('Ctrl-C: stopped; checkpoints already written are kept, and the '
                            'same command resumes from the last one'), INTERRUPTED_STATUS)
  except (*USER_ERRORS, app.UsageError) as e:
    # The message says what and how to fix it; the traceback would only bury it.
    if traceback:
      raise
    _exit(e)
  except OSError as e:  # a filesystem refusing (read-only, no permission, disk full)
    if traceback:
      raise
    where = f' ({e.filename})' if e.filename else ''
    _exit(type(e)(f'{e.strerror or e}{where}'))


def run_app(work: Callable[[], object], *, quiet: bool = False) -> None:
  """`app.run` for a script whose work takes no positional arguments.

  Flag errors and user errors end in one `error (...)` line (the script's own `--traceback`,
  defined here, shows the full one); `quiet` keeps the console to warnings, for
  scripts that print their own progress.
  """
  if 'traceback' not in flags.FLAGS:
    define_traceback_flag()

  def run(argv: list[str]) -> object:
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if quiet:
      logging.set_verbosity(logging.WARNING)
    else:
      setup_logging()
    traceback = bool(flags.FLAGS.traceback)
    return run_reporting_user_errors(work, traceback)

  app.run(run, flags_parser=parse_flags)


# --------------------------------------------------------------------------------------------------
# Flag parsing: --config=file:args and --config.<key>=<value> go wrong here, inside absl.
# --------------------------------------------------------------------------------------------------


def _innermost(e: BaseException) -> BaseException:
  """The original error under absl's and ml_collections' re-raises (tracebacks in their text)."""
  while (e.__cause__ or e.__context__) is not None:
    e = e.__cause__ or e.__context__
  return e


_WRAPPED = 'Error whilst parsing config file'


def _config_flags(flag_values: flags.FlagValues) -> list[str]:
  from ml_collections.config_flags import config_flags
  return [name for name in flag_values
          if isinstance(flag_values[name], config_flags._ConfigFlag)]


def _unknown_key_error(flag_values: flags.FlagValues, name: str, argv: Sequence[str]
                       ) -> ValueError | None:
  """The first `--<name>.<key>=...` of argv whose key the loaded config lacks, named with the
  keys it does have at that level (and the closest ones)."""
  config = flag_values[name].value
  if config is None or not hasattr(config, 'keys'):
    # ml_collections applies the overrides (from sys.argv) while parsing --config itself, so a bad
    # key fails before the flag has a value: load the config file again to name the valid keys.
    given = [a.split('=', 1)[1] for a in argv if a.startswith(f'--{name}=')]
    try:
      config = flag_values[name].parser.parse(given[-1]) if given else None
    except Exception:
      return None
    if config is None or not hasattr(config, 'keys'):
      return None
  prefix = f'--{name}.'
  for arg in argv:
    if not arg.startswith(prefix):
      continue
    path = arg[len(prefix):].split('=', 1)[0]
    node, parts = config, path.split('.')
    for depth, part in enumerate(parts):
      if hasattr(node, 'keys') and part in node:
        node = node[part]
        continue
      where = '.'.join([name, *parts[:depth]])
      keys = sorted(node.keys()) if hasattr(node, 'keys') else []
      close = difflib.get_close_matches(part, keys, n=3)
      hint = f' Did you mean {", ".join(close)}?' if close else ''
      return ValueError(f'Unknown config key {".".join([name, *parts[:depth + 1]])!r} in {arg!r}.'
                        f'{hint} The keys of {where} are: {", ".join(keys)}')
  return None


def _missing_config_file(flag_values: flags.FlagValues, name: str) -> BaseException | None:
  """ml_collections defers a config file's load error until the config is read: read it now."""
  try:
    flag_values[name].value.keys()
  except OSError as e:
    given = flag_values[name].serialize().partition('=')[2]
    path = given.split(':', 1)[0]
    if os.path.exists(path) and e.__cause__ is not None:
      return e.__cause__  # the file's get_config raised it (e.g. configs/saved.py's own check)
    return FileNotFoundError(f'--{name}: config file {path!r} not found (the flag takes '
                             f'<file.py>[:<args>], e.g. configs/default.py:method=deep,arch=mlp)')
  except Exception:
    return None
  return None


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl flag parsing whose errors (including loading --config files) are one `error (...)` line.

  Use as `app.run(main, flags_parser=cli.parse_flags)`; returns the remaining arguments.
  """
  try:
    return resolve_flags(argv, flag_values)
  except (flags.Error, *USER_ERRORS, AttributeError, KeyError, TypeError, OSError) as e:
    _exit(e)
    raise  # unreachable: _exit exits


def resolve_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses argv into `flag_values`, raising one clear exception for a bad --config.

  The in-process half of `parse_flags` (tests walk their catalogue of bad command lines through
  it): a mistyped `--config.<key>` becomes a ValueError naming the key and the valid ones, a
  missing config file a FileNotFoundError naming the path; errors raised by the config file's
  `get_config` come out as themselves rather than wrapped with its traceback in their message.
  """
  try:
    rest = flag_values(list(argv))
  except (AttributeError, KeyError, flags.UnrecognizedFlagError):  # a --config.<key> it lacks
    for name in _config_flags(flag_values):
      unknown = _unknown_key_error(flag_values, name, argv)
      if unknown is not None:
        raise unknown from None
    raise
  except flags.Error as e:
    inner = _innermost(e)
    if inner is not e and _WRAPPED in str(e):
      # ml_collections re-raises get_config's error with its traceback in the text, and absl
      # wraps that again: the original error says it all.
      raise inner from None
    raise
  for name in _config_flags(flag_values):
    missing = _missing_config_file(flag_values, name)
    if missing is not None:
      raise missing
  return rest
