"""One-shot GPU benchmark (under 5 minutes on one GPU): WRN-28-10 ensembles and a ResNet-20 epoch.

Times, with scripts/benchmark.py's machinery (the real jitted train step, synthetic data, blocks
interleaved round-robin, medians):

- the WRN-28-10 batch ensemble and hyper-batch ensemble train steps at the official batch (K = 4
  members, 128 unique CIFAR-10 images per step, 512 member rows; configs/wrn28_10.py) and the
  hyper-batch / batch step-cost ratio (the paper reports 2.0);
- memory: the device's peak bytes in use after each model has compiled and run (jax
  `Device.memory_stats()`, cumulative over the process, so the second model's figure covers both;
  absent on CPU) and each compiled step's own argument / temporary bytes (XLA's memory analysis);
- one epoch of ResNet-20 (single model, batch 128, 390 steps = 50 000 / 128) on CIFAR-shaped
  synthetic data: the train step run `steps` times back to back, one host sync at the end.

  python scripts/gpu_benchmark.py --out=/tmp/gpu_benchmark.json
  python scripts/gpu_benchmark.py --smoke        # WRN-10-1 and a tiny ResNet, a few steps (CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import time

# scripts/benchmark.py's machinery (a script's own folder is importable when it runs).
import benchmark
import jax

from hyper_ensembles.training import sharding

FULL = {'batch_size': 128, 'epoch_steps': 50_000 // 128, 'rounds': 5, 'block_seconds': 2.0,
        'config_args': ''}
SMOKE = {'batch_size': 8, 'epoch_steps': 4, 'rounds': 2, 'block_seconds': 0.05,
         'config_args': 'smoke'}


def peak_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--smoke', action='store_true', help='tiny models and a few steps (CPU test)')
  p.add_argument('--out', default=None, help='write the results here as JSON')
  flags = p.parse_args(argv)
  size = SMOKE if flags.smoke else FULL
  t_start = time.perf_counter()
  args = benchmark.parse_args([
      f"--batch_size={size['batch_size']}", '--num_members=4', f"--rounds={size['rounds']}",
      f"--block_seconds={size['block_seconds']}", f"--config_args={size['config_args']}",
      '--warmup_steps=2'])
  mesh = sharding.create_mesh()
  models, memory = [], {}
  for method in ('batch', 'hyper_batch'):
    spec = benchmark.Spec(f'wrn28_10 {method}', method, 'wrn28_10', size['batch_size'])
    print(f'compiling {spec.label} ...', flush=True)
    models.append(benchmark.prepare_model(spec, args, mesh))
    memory[method] = {'peak_bytes_in_use_so_far': peak_bytes(),
                      'compiled_step': models[-1].info['memory_xla']}
  for i in range(args.rounds):
    for w in models[i % 2:] + models[:i % 2]:
      w.time_block()
  batch, hyper = (1.0 / w.seconds_per_call() for w in models)

  print('compiling resnet20 single ...', flush=True)
  resnet = benchmark.prepare_model(
      benchmark.Spec('resnet20 single', 'single', 'resnet20', size['batch_size']), args, mesh)
  t0 = time.perf_counter()
  resnet.run(size['epoch_steps'])
  epoch_seconds = time.perf_counter() - t0

  result = {
      'device': str(jax.devices()[0]), 'backend': jax.default_backend(), 'smoke': flags.smoke,
      'wrn28_10': {
          'unique_batch': size['batch_size'], 'members': 4,
          'batch_steps_per_second': batch, 'hyper_batch_steps_per_second': hyper,
          'hyper_over_batch_step_cost': batch / hyper, 'paper_ratio': 2.0,
          'block_seconds': {w.spec.method: w.times for w in models},
          'compile_seconds': {w.spec.method: w.info['compile_seconds'] for w in models},
          'num_params': {w.spec.method: w.info['num_params'] for w in models},
          'memory': memory},
      'resnet20_epoch': {'steps': size['epoch_steps'], 'batch_size': size['batch_size'],
                         'seconds': epoch_seconds,
                         'images_per_second': size['epoch_steps'] * size['batch_size']
                         / epoch_seconds,
                         'compile_seconds': resnet.info['compile_seconds']},
      'wall_seconds': time.perf_counter() - t_start,
  }
  w = result['wrn28_10']
  gib = lambda b: f'{b / 2**30:.2f} GiB' if b else 'n/a'
  print(f"\n{result['device']}: WRN-28-10, {w['members']} members × {w['unique_batch']} unique")
  print(f"  batch ensemble      {batch:7.2f} steps/s   peak so far "
        f"{gib(memory['batch']['peak_bytes_in_use_so_far'])}")
  print(f"  hyper-batch         {hyper:7.2f} steps/s   peak so far "
        f"{gib(memory['hyper_batch']['peak_bytes_in_use_so_far'])}")
  print(f"  hyper-batch / batch step cost {batch / hyper:.2f} (paper 2.0)")
  r = result['resnet20_epoch']
  print(f"ResNet-20 epoch ({r['steps']} steps of {r['batch_size']}): {r['seconds']:.1f} s, "
        f"{r['images_per_second']:.0f} images/s")
  print(f"(total {result['wall_seconds']:.0f} s)")
  if flags.out:
    with open(flags.out, 'w') as f:
      json.dump(result, f, indent=2)
    print(f'wrote {flags.out}')
  return result


if __name__ == '__main__':
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # peak = what the steps use
  main()
