"""What every stage of one pipeline invocation reads: its inputs, the launcher and the stage log.

A `Context` is read-only: each stage takes it with the results of earlier stages as arguments and
returns its own (pipeline.py threads them); the stage log (DIR/stages.jsonl) records whether each
stage ran or was skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import ml_collections
from absl import logging

from hyper_ensembles.hyper_deep.plan import Plan, Settings
from hyper_ensembles.hyper_deep.predictions import Predictions
from hyper_ensembles.launching.jobs import Launcher

STAGE_LOG_FILE = 'stages.jsonl'


class StageLog:
  """Appends one JSON line per stage to DIR/stages.jsonl (and the absl log): ran or skipped."""

  def __init__(self, workdir: str, write: bool):
    self.path = os.path.join(workdir, STAGE_LOG_FILE)
    self.write = write
    self.t0 = time.time()

  def record(self, stage: str, ran: bool, **info) -> None:
    now = time.time()
    entry = {'stage': stage, 'action': 'ran' if ran else 'skipped', 'time': now,
             'seconds': round(now - self.t0, 3), **info}
    self.t0 = now
    logging.info('hyper-deep stage %s: %s %s', stage, entry['action'], info or '')
    if self.write:
      # Appended, not rewritten atomically: a line is the unit, and a torn last line is harmless.
      with open(self.path, 'a') as f:
        f.write(json.dumps(entry, sort_keys=True) + '\n')


def read_stage_log(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, STAGE_LOG_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


@dataclasses.dataclass(frozen=True)
class Context:
  """One invocation of the pipeline: what no stage changes."""

  config: ml_collections.ConfigDict
  workdir: str
  settings: Settings
  plan: Plan
  launcher: Launcher
  is_main: bool
  log: StageLog
  predictions: Predictions

  @property
  def ensemble_size(self) -> int:
    return self.settings.ensemble_size
