"""What the stages of one pipeline invocation share: inputs, the stage log, and their results.

Each stage reads the results of the stages before it from the `Context` and adds its own; the
stage log (DIR/stages.jsonl) records whether it ran or was skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import TYPE_CHECKING, Any

import ml_collections
from absl import logging

from hyper_ensembles.launching import launch

if TYPE_CHECKING:
  from hyper_ensembles.hyper_deep.plan import Member, Plan, Run, Settings
  from hyper_ensembles.hyper_deep.runs import Predictions
  from hyper_ensembles.hyper_deep.selection import Ensemble

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


@dataclasses.dataclass
class Context:
  """One invocation of the pipeline. `changed`: some stage recomputed an input of later ones."""

  config: ml_collections.ConfigDict
  workdir: str
  settings: Settings
  plan: Plan
  launcher: launch.Launcher
  is_main: bool
  log: StageLog
  predictions: Predictions
  changed: bool = False
  # What the stages produce, in order.
  pool_metrics: list[dict] = dataclasses.field(default_factory=list)
  pool_members: tuple[Member, ...] = ()
  hyper_ens: Ensemble | None = None
  hyper_deep: Ensemble | None = None
  strat_metrics: list[dict] = dataclasses.field(default_factory=list)
  retrain_plan: tuple[Run, ...] = ()
  twins: dict[tuple[int, int], Member] = dataclasses.field(default_factory=dict)
  retrain_metrics: list[dict] = dataclasses.field(default_factory=list)
  fixed_ens: Ensemble | None = None
  fixed_metrics: list[dict] = dataclasses.field(default_factory=list)
  deep_metrics: dict | None = None
  metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def ensemble_size(self) -> int:
    return self.settings.ensemble_size
