"""What every command-line entry point shares: quiet library logging and one-line user errors.

`main.py` (training), `evaluate.py` (evaluation only) and every script in `scripts/` report a
mistake the user can fix from the message alone — unknown names, missing files, bad sizes, a
workdir of another config, a diverged run — as one `error (<type>): <message>` line and exit status
1; `--traceback` shows the full one.
"""

from __future__ import annotations

import argparse
import logging as logging_std
import sys
from collections.abc import Callable

from absl import flags, logging

# What a user can fix from the message alone (unknown names, missing files, bad sizes, a workdir
# written by another config — a ValueError — and a non-finite loss).
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


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


def run_reporting_user_errors(fn: Callable[[], object], traceback: bool) -> None:
  """Runs `fn`; a user error ends the process with one `error (...)` line unless `traceback`."""
  try:
    fn()
  except USER_ERRORS as e:
    # The message says what and how to fix it; the traceback would only bury it.
    if traceback:
      raise
    sys.exit(f'error ({type(e).__name__}): {e}')
