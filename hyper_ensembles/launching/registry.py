"""The launchers by name, and the command-line flags that choose one and set its options.

  local  in this process, one after another (local.py); the first error stops the list. The
         default.
  ray    each run a subprocess `python -m hyper_ensembles.main` started by a Ray task
         (ray_launcher.py), several at a time, on a Ray it starts here or on an existing cluster
         (`ray_address`). A failed run is reported with its workdir and log and the others go on;
         jobs.RunsFailedError lists the failures at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from absl import flags

from hyper_ensembles.launching import local, ray_launcher
from hyper_ensembles.launching.jobs import DEFAULT_RAY_TEMP_DIR, Echo, Launcher, LaunchOptions

# name → constructor(options, echo).
LAUNCHERS: dict[str, Callable[[LaunchOptions, Echo], Launcher]] = {
    'local': lambda options, echo: local.LocalLauncher(echo),
    'ray': ray_launcher.RayLauncher,
}


def create(options: LaunchOptions | None = None, echo: Echo = print) -> Launcher:
  """The launcher `options` names (local when None); use it as a context manager or close it."""
  options = options or LaunchOptions()
  if options.launcher not in LAUNCHERS:
    raise ValueError(f'Unknown launcher {options.launcher!r}; choose one of {list(LAUNCHERS)}.')
  return LAUNCHERS[options.launcher](options, echo)


# --------------------------------------------------------------------------------------------------
# Command-line flags shared by scripts/sweep.py and scripts/hyper_deep_ensemble.py.
# --------------------------------------------------------------------------------------------------


def define_flags() -> dict[str, flags.FlagHolder]:
  return {
      'launcher': flags.DEFINE_enum(
          'launcher', 'local', list(LAUNCHERS),
          'local: train the runs here, one after another; ray: as parallel subprocesses on Ray.'),
      'ray_address': flags.DEFINE_string(
          'ray_address', '', 'Address of a running Ray cluster (auto, HOST:6379, '
          'ray://HOST:10001); empty: start a Ray on this machine for the runs.'),
      'max_concurrent': flags.DEFINE_integer(
          'max_concurrent', 0, 'Runs at a time (ray); 0: the CPU count here, unlimited on a '
          'cluster.'),
      'cpus_per_run': flags.DEFINE_integer(
          'cpus_per_run', 0, 'CPUs (and JAX CPU threads) per run (ray); 0: CPUs / max_concurrent '
          'here, 1 on a cluster.'),
      'gpus_per_run': flags.DEFINE_float('gpus_per_run', 0.0, 'GPUs per run (ray).'),
      'temp_dir': flags.DEFINE_string(
          'ray_temp_dir', DEFAULT_RAY_TEMP_DIR, 'Temp dir of a Ray started here (keep it short: '
          'Ray\'s unix sockets live under it).'),
  }


def options_from_flags(holders: Mapping[str, flags.FlagHolder]) -> LaunchOptions:
  return LaunchOptions(**{name: holder.value for name, holder in holders.items()})
