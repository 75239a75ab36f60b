"""Ctrl-C during training: finish the step, save a checkpoint, stop with one line.

`SigintStop.wrap(steps)` passes the training loop's steps through; the first SIGINT while it runs
only sets `requested`, and the wrapper ends the loop after the step under way (a step interrupted
half-way would leave donated buffers behind and nothing to save). The loop then saves a checkpoint
at that step and raises `Interrupted`, which runs/cli.py reports as one line. A second Ctrl-C
interrupts at once (KeyboardInterrupt), keeping the checkpoints already written. The step is the
data streams' position (training/checkpoints.py), so the resumed run ends bitwise equal to an
uninterrupted one. Outside the loop SIGINT keeps Python's default handler.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar('T')


class Interrupted(Exception):
  """Training stopped on Ctrl-C after saving a checkpoint at the current step."""


class SigintStop:
  """See the module docstring; `requested` tells whether a SIGINT ended the loop."""

  def __init__(self):
    self.requested = False

  def _handler(self, signum, frame):
    if self.requested:
      raise KeyboardInterrupt  # the second Ctrl-C: stop now
    self.requested = True

  def wrap(self, iterable: Iterable[T]) -> Iterator[T]:
    if threading.current_thread() is not threading.main_thread():
      yield from iterable  # signal handlers can only be set from the main thread
      return
    previous = signal.signal(signal.SIGINT, self._handler)
    try:
      for item in iterable:
        yield item
        if self.requested:
          return
    finally:
      signal.signal(signal.SIGINT,
                    previous if previous is not None else signal.default_int_handler)
