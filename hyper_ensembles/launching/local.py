"""The `local` launcher: trains the runs in this process, one after another (the default).

Each run is `train.train_and_evaluate`; the first error stops the list, as a plain loop would.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyper_ensembles.launching.jobs import Echo, Job, Outcome, finished_outcome, is_complete


class LocalLauncher:
  """Trains the jobs in this process, one after another; errors propagate at once."""

  def __init__(self, echo: Echo = print):
    self.echo = echo

  def run_one(self, job: Job) -> Outcome:
    if is_complete(job.workdir):
      self.echo(f'{job.name}: done')
      return finished_outcome(job)
    self.echo(f'{job.name}: training')
    # Imported here, not at the top: a driver that only launches Ray runs (registry.py imports
    # this module) never loads the training stack (methods, models, Flax).
    from hyper_ensembles import train
    metrics = train.train_and_evaluate(job.config, job.workdir)
    return Outcome(job=job, status='trained', metrics=metrics,
                   seconds=float(metrics.get('train_seconds', 0.0)))

  def run(self, jobs: Sequence[Job]) -> list[Outcome]:
    return [self.run_one(job) for job in jobs]

  def start(self) -> None:
    """Nothing to start: runs train in this process."""

  def close(self) -> None:
    pass

  def __enter__(self) -> LocalLauncher:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
