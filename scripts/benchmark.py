"""Training-throughput benchmark: the real jitted train step of each method × architecture.

Measures, in one run on the default device:

- the machine's float32 matmul rate: GFLOP/s of a jitted `jnp.dot` of two 2048×2048 matrices;
- for every model: steps/s and examples/s (unique examples per step × steps/s) of the train step
  the training loop runs (`training.steps.jit_train_step` + `training.state.create_train_state`,
  jitted with the state donated), built from `configs/default.py` with the overrides below, on
  synthetic uint8 images of the dataset's shape (no data is loaded);
- each model's FLOPs per step and its achieved GFLOP/s as a fraction of the matmul rate;
- ratios: steps/s over the plain single model's at the reference batch ("× b512", the unit of
  PERFORMANCE.md), and each ensemble's step time over the single model's at the same number of
  unique examples per step ("cost × single"); per architecture, the ratios PERFORMANCE.md sets
  bounds on (`issue_ratios`: single share of the matmul rate, batch ensemble ≤ M × single,
  hyper-batch ≤ 2 × batch, vectorised deep ensemble vs its members one after another);
- optionally (`--e2e_method=batch`), after the timed rounds, one epoch of the real training loop
  (`train.train_and_evaluate`, real data) against the step rate of the same model.

Machines are shared and noisy, so the blocks of all workloads (the matmul included) are interleaved
round-robin: each round times one block of each, so load from elsewhere hits every model alike.
Every number is the median over rounds; the best (fastest) block is kept in the JSON as well.

Workload of PERFORMANCE.md (the defaults): MLP 784-200-200-10 on 28×28×1 images, ReLU, softmax
cross-entropy, SGD with momentum 0.9, M = 4 members, 128 unique examples per step (512 member rows:
the deep ensemble's members each get their own 128 examples, the batch ensembles tile 128 examples
over the members), no dropout (rate 0); the hyper-batch ensemble tunes its L2 only
(`--hyper_tuned`) and is timed with and without its L2 terms ("cross-entropy only": the method is
built with `penalties=False`, methods/base.py `MethodSettings`). Only train
steps are timed (not the hyper-batch tune step, one per `config.hyper.tune_every_steps`).

  .venv/bin/python scripts/benchmark.py --out=/tmp/benchmark.json

Other architectures are chosen by name (`--archs=mlp,lenet`: any name in the model registry);
their input shape comes from `--dataset`, by default the architecture's own (`DEFAULT_DATASET`),
and their FLOPs from `ANALYTIC_FLOPS` if it has a formula, else from XLA's cost analysis. Methods
not registered in methods/registry.py are skipped with a note. XLA options: `--xla_flags`
(appended to $XLA_FLAGS before the backend starts).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

# XLA reads $XLA_FLAGS when the backend starts (first use), not when jax is imported.
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.streams import steps_per_epoch
from hyper_ensembles.methods import registry as method_registry
from hyper_ensembles.models import lenet
from hyper_ensembles.models import registry as model_registry
from hyper_ensembles.training import sharding
from hyper_ensembles.training.state import count_params, create_train_state
from hyper_ensembles.training.steps import jit_train_step

MATMUL_SIZE = 2048
NUM_BATCHES = 4  # distinct synthetic batches cycled through, so no step sees the same inputs twice


@dataclasses.dataclass(frozen=True)
class SyntheticData:
  """Shape facts of a dataset; the benchmark draws random uint8 images and labels of this shape."""

  info: DatasetInfo
  num_train: int  # N, the divisor of the L2 penalties


def _info(name: str, num_classes: int, shape: tuple[int, int, int],
          augmentation: str = 'none') -> DatasetInfo:
  c = shape[-1]
  return DatasetInfo(name=name, num_classes=num_classes, image_shape=shape, mean=(0.5,) * c,
                     std=(0.25,) * c, augmentation=augmentation)


DATASETS = {
    'fashion_mnist': SyntheticData(_info('fashion_mnist', 10, (28, 28, 1)), 57_000),
    'digits': SyntheticData(_info('digits', 10, (8, 8, 1)), 1_200),
    'cifar10': SyntheticData(_info('cifar10', 10, (32, 32, 3), 'crop_flip'), 47_500),
    'cifar100': SyntheticData(_info('cifar100', 100, (32, 32, 3), 'crop_flip'), 47_500),
}
# Architecture → the dataset whose input shape it is benchmarked on unless --dataset says otherwise.
DEFAULT_DATASET = {'mlp': 'fashion_mnist', 'lenet': 'fashion_mnist', 'resnet20': 'cifar10',
                   'wrn28_10': 'cifar10'}
# Architecture → its config file in configs/ and that file's argument string; the others use
# configs/default.py.
CONFIG_FILES = {'resnet20': ('resnet20', 'method={method},dataset={dataset}'),
                'wrn28_10': ('wrn28_10', 'method={method},dataset={dataset}')}
DEFAULT_CONFIG_FILE = ('default', 'method={method},arch={arch},dataset={dataset}')
# Layer form → weight paths per layer (a hyper-batch layer multiplies by both W and Δ).
WEIGHT_PATHS = {'plain': 1, 'batch': 1, 'hyper_batch': 2}


# ---- FLOP counts -------------------------------------------------------------------------------
def mlp_train_flops(config: ml_collections.ConfigDict, info: DatasetInfo, rows: int,
                    paths: int) -> float:
  """Matmul FLOPs of one MLP training step on `rows` member rows.

  Forward 2·rows·Σ d_in·d_out per weight path; backward the same again for the kernel gradients
  plus the input gradients of every layer but the first (whose input is data). The common
  "training ≈ 3 × forward" also counts that first-layer input gradient, which no implementation
  here computes (for 784-200-200-10 it is 26 % of the total). Elementwise work is not counted.
  """
  widths = (int(np.prod(info.image_shape)), *config.model.mlp.hidden, info.num_classes)
  sizes = [a * b for a, b in itertools.pairwise(widths)]
  return 2.0 * rows * paths * (2 * sum(sizes) + sum(sizes[1:]))


def lenet_train_flops(config: ml_collections.ConfigDict, info: DatasetInfo, rows: int,
                      paths: int) -> float:
  """Multiply-add FLOPs of one LeNet training step on `rows` member rows, the peers' count
  (peerbench/common.py): 3 × forward (the first layer's input gradient included), 5×5 SAME
  convolutions, 2×2 pools, elementwise work not counted."""
  model = lenet.LeNet(kit=None, num_classes=info.num_classes)
  h, w, c = info.image_shape
  macs = 0
  for features in model.conv_features:
    macs += h * w * 25 * c * features
    h, w, c = -(-h // 2), -(-w // 2), features
  widths = (h * w * c, *model.dense_features, info.num_classes)
  macs += sum(a * b for a, b in itertools.pairwise(widths))
  return 3 * 2.0 * rows * paths * macs


# Architecture → analytic FLOPs(config, dataset info, member rows, weight paths); architectures
# without an entry use XLA's cost analysis of the compiled step.
ANALYTIC_FLOPS: dict[str, Callable[..., float]] = {'mlp': mlp_train_flops,
                                                   'lenet': lenet_train_flops}


def xla_memory(compiled) -> dict | None:
  """Bytes of a compiled program's arguments, outputs and temporaries (XLA's memory analysis)."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if analysis is None:
    return None
  keys = ('argument_size_in_bytes', 'output_size_in_bytes', 'temp_size_in_bytes',
          'alias_size_in_bytes', 'generated_code_size_in_bytes')
  return {k: int(getattr(analysis, k)) for k in keys if hasattr(analysis, k)}


def xla_flops(compiled) -> float | None:
  """FLOPs per call from XLA's cost analysis of a compiled function, if the backend reports it."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # not every backend implements it
    return None
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


# ---- what is measured --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spec:
  """One model to time."""

  label: str
  method: str
  arch: str
  batch_size: int
  ce_only: bool = False  # no L2: coefficients 0 and no penalty terms built
  reference: bool = False  # the single model at the reference batch ("× b512")


@dataclasses.dataclass
class Workload:
  """A compiled workload: `run(n)` runs n calls and blocks until they are done."""

  run: Callable[[int], None]
  flops: float | None  # per call
  info: dict
  spec: Spec | None = None
  steps: int = 1  # calls per timed block
  times: list[float] = dataclasses.field(default_factory=list)
  last_metrics: Callable[[], dict] = dict

  def time_block(self) -> None:
    t0 = time.perf_counter()
    self.run(self.steps)
    self.times.append(time.perf_counter() - t0)

  def seconds_per_call(self, best: bool = False) -> float:
    return (min(self.times) if best else statistics.median(self.times)) / self.steps


def calibrate(run: Callable[[int], None], block_seconds: float) -> int:
  """Calls per block so that a block lasts about `block_seconds`."""
  n = 1
  while True:
    t0 = time.perf_counter()
    run(n)
    elapsed = time.perf_counter() - t0
    if elapsed >= block_seconds / 4 or n >= 1 << 16:
      return max(1, round(n * block_seconds / max(elapsed, 1e-9)))
    n *= 4


def dataset_for(arch: str, args: argparse.Namespace) -> str:
  return args.dataset or DEFAULT_DATASET.get(arch, 'fashion_mnist')


def build_config(spec: Spec, args: argparse.Namespace) -> ml_collections.ConfigDict:
  """The architecture's config (CONFIG_FILES) for the method, with the benchmark's overrides."""
  module, arg = CONFIG_FILES.get(spec.arch, DEFAULT_CONFIG_FILE)
  arg = arg.format(method=spec.method, arch=spec.arch, dataset=dataset_for(spec.arch, args))
  if args.config_args:
    arg = f'{arg},{args.config_args}'
  config = importlib.import_module(f'configs.{module}').get_config(arg)
  config.seed = 0
  config.num_members = args.num_members
  config.batch_size = spec.batch_size
  opt = config.optimizer
  opt.name, opt.learning_rate, opt.momentum, opt.nesterov = 'sgd', args.learning_rate, 0.9, False
  opt.warmup_epochs, opt.decay_epochs, opt.decay_fractions = 0.0, (), ()
  if 'dropout' in config.hparams:
    config.hparams.dropout = args.dropout
  if 'hyper' in config and args.hyper_tuned:
    keep = args.hyper_tuned.split(',')
    space = {k: tuple(v) for k, v in config.hyper.space.items() if any(w in k for w in keep)}
    with config.unlocked():
      config.hyper.space = ml_collections.ConfigDict(space)
  return config


def synthetic_batches(rng: np.random.Generator, data: SyntheticData, orders: int, batch_size: int,
                      mesh) -> list[dict]:
  """Device batches `{'images': uint8 [S, B, H, W, C], 'labels': int32 [S, B]}`, as the loop's."""
  out = []
  for _ in range(NUM_BATCHES):
    images = rng.integers(0, 256, (orders, batch_size, *data.info.image_shape), dtype=np.uint8)
    labels = rng.integers(0, data.info.num_classes, (orders, batch_size), dtype=np.int32)
    out.append({'images': sharding.to_global(images, mesh, 1),
                'labels': sharding.to_global(labels, mesh, 1)})
  return out


def prepare_model(spec: Spec, args: argparse.Namespace, mesh) -> Workload:
  """Builds, compiles and warms up one model's train step; calibrates its block length."""
  data = DATASETS[dataset_for(spec.arch, args)]
  config = build_config(spec, args)
  sharding.check_divisible(spec.batch_size, 'batch_size')
  # Cross-entropy only: the method is built without its penalty terms (MethodSettings.penalties).
  method = method_registry.create_method(config, data.info, data.num_train,
                                         penalties=not spec.ce_only)
  state, tx, _ = create_train_state(method, config,
                                    steps_per_epoch(data.num_train, spec.batch_size), mesh)
  batches = synthetic_batches(np.random.default_rng(0), data, method.num_data_orders,
                              spec.batch_size, mesh)
  t0 = time.perf_counter()
  step = jit_train_step(method, tx).lower(state, batches[0]).compile()
  compile_seconds = time.perf_counter() - t0

  rows = method.num_members * spec.batch_size
  analytic = ANALYTIC_FLOPS.get(spec.arch)
  flops_analytic = (analytic(config, data.info, rows, WEIGHT_PATHS.get(method.layer_form, 1))
                    if analytic else None)
  flops_xla = xla_flops(step)
  carry = {'state': state, 'metrics': {}}

  def run(n: int) -> None:
    s, metrics = carry['state'], carry['metrics']
    for i in range(n):
      s, metrics = step(s, batches[i % NUM_BATCHES])
    jax.block_until_ready(s)
    carry['state'], carry['metrics'] = s, metrics

  run(args.warmup_steps)
  info = {
      'label': spec.label, 'method': spec.method, 'arch': spec.arch, 'dataset': data.info.name,
      'batch_size': spec.batch_size, 'num_members': method.num_members, 'member_rows': rows,
      'layer_form': method.layer_form, 'ce_only': spec.ce_only, 'reference': spec.reference,
      'num_params': count_params(state.params), 'compile_seconds': compile_seconds,
      'flops_analytic': flops_analytic, 'flops_xla': flops_xla, 'memory_xla': xla_memory(step),
  }
  return Workload(run=run, flops=flops_analytic or flops_xla, info=info, spec=spec,
                  steps=calibrate(run, args.block_seconds),
                  last_metrics=lambda: jax.device_get(carry['metrics']))


def end_to_end(workload: Workload, args: argparse.Namespace) -> dict:
  """One run of the real training loop (`train.train_and_evaluate`) for `args.e2e_epochs` epochs
  on the architecture's real dataset, with the benchmarked model's config; its training rate
  against the step benchmark's for the same model.

  The loop's `train_seconds` (metrics.json) includes the first step's compilation; the benchmark's
  compile time of the same step is subtracted. Data loading and the final evaluation are outside
  `train_seconds` (reported as wall time). Not interleaved with the timed blocks: it runs after.
  """
  from hyper_ensembles import train  # the root entry point (scripts sit above every layer)

  spec = workload.spec
  config = build_config(spec, args)
  config.num_epochs, config.num_train_steps = float(args.e2e_epochs), -1
  data = DATASETS[dataset_for(spec.arch, args)]
  steps = round(args.e2e_epochs * steps_per_epoch(data.num_train, spec.batch_size))
  with tempfile.TemporaryDirectory(prefix='benchmark_e2e_') as workdir:
    t0 = time.perf_counter()
    results = train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - t0
  train_seconds = float(results['train_seconds'])
  compile_seconds = workload.info['compile_seconds']
  loop_rate = steps / max(train_seconds - compile_seconds, 1e-9)
  bench_rate = 1.0 / workload.seconds_per_call()
  return {'label': f'{spec.label}, {args.e2e_epochs:g} epoch(s) of {config.dataset}',
          'steps': steps, 'train_seconds': train_seconds, 'compile_seconds': compile_seconds,
          'wall_seconds': wall, 'loop_steps_per_second': loop_rate,
          'benchmark_steps_per_second': bench_rate, 'loop_over_benchmark': loop_rate / bench_rate}


def prepare_matmul(args: argparse.Namespace) -> Workload:
  n = MATMUL_SIZE
  ka, kb = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  dot = jax.jit(jnp.dot).lower(a, b).compile()

  def run(calls: int) -> None:
    out = None
    for _ in range(calls):
      out = dot(a, b)
    jax.block_until_ready(out)

  run(2)
  return Workload(run=run, flops=2.0 * n**3, info={'size': n},
                  steps=calibrate(run, args.block_seconds))


def model_specs(args: argparse.Namespace) -> tuple[list[Spec], list[str]]:
  """The models to time, and notes on what was skipped."""
  specs, notes = [], []
  methods = [m for m in args.methods.split(',') if m]
  ce_only = {m for m in args.ce_only_methods.split(',') if m}
  for arch in [a for a in args.archs.split(',') if a]:
    if arch not in model_registry.ARCHITECTURES:
      notes.append(f'skipped arch {arch}: not registered in models/registry.py')
      continue
    specs.append(Spec(f'{arch} single b{args.reference_batch_size} (reference)', 'single', arch,
                      args.reference_batch_size, reference=True))
    for method in methods:
      if method not in method_registry.METHODS:
        notes.append(f'skipped method {method}: not registered in methods/registry.py')
        continue
      specs.append(Spec(f'{arch} {method}', method, arch, args.batch_size))
      if method in ce_only:
        specs.append(Spec(f'{arch} {method} (cross-entropy only)', method, arch, args.batch_size,
                          ce_only=True))
  return specs, list(dict.fromkeys(notes))


# ---- report ------------------------------------------------------------------------------------
def summarise(models: list[Workload], matmul: Workload) -> dict:
  rates = {best: matmul.flops / matmul.seconds_per_call(best) for best in (False, True)}
  rows = []
  for w in models:
    metrics = w.last_metrics()
    row = dict(w.info)
    for best, suffix in ((False, ''), (True, '_best')):
      sps = 1.0 / w.seconds_per_call(best)
      row[f'steps_per_second{suffix}'] = sps
      row[f'examples_per_second{suffix}'] = sps * w.spec.batch_size
      if w.flops:
        row[f'gflops_per_second{suffix}'] = w.flops * sps / 1e9
        row[f'fraction_of_matmul{suffix}'] = w.flops * sps / rates[best]
    row.update(flops=w.flops, steps_per_block=w.steps, block_seconds=w.times,
               final_loss=float(metrics['loss']) if 'loss' in metrics else None)
    rows.append(row)
  for row in rows:
    ref = next((r for r in rows if r['arch'] == row['arch'] and r['reference']), None)
    single = next((r for r in rows if r['arch'] == row['arch'] and r['method'] == 'single'
                   and r['batch_size'] == row['batch_size'] and not r['ce_only']), None)
    for suffix in ('', '_best'):
      sps = row[f'steps_per_second{suffix}']
      if ref is not None:
        row[f'x_reference{suffix}'] = sps / ref[f'steps_per_second{suffix}']
      if single is not None:
        row[f'cost_x_single{suffix}'] = single[f'steps_per_second{suffix}'] / sps
  return {
      'ratios': issue_ratios(rows),
      'matmul': {'size': matmul.info['size'], 'gflops_per_second': rates[False] / 1e9,
                 'gflops_per_second_best': rates[True] / 1e9, 'calls_per_block': matmul.steps,
                 'block_seconds': matmul.times},
      'models': rows,
  }


def issue_ratios(rows: list[dict]) -> list[dict]:
  """Per architecture, the ratios PERFORMANCE.md sets targets on (medians; `bound` and `better`
  say which side meets it): the single model's share of the matmul rate, the batch ensemble's step
  cost over the single step at the same unique batch (≤ M), the hyper-batch over the batch step
  cost (≤ 2), and the vectorised deep ensemble's speed-up over training its M members one after
  another (M single steps at the same per-member batch; ≥ 1)."""
  out = []
  for arch in dict.fromkeys(r['arch'] for r in rows):
    get = lambda method, ce=False, ref=False, a=arch: next(
        (r for r in rows if r['arch'] == a and r['method'] == method and r['ce_only'] == ce
         and r['reference'] == ref), None)
    ref, batch, hyper, deep = get('single', ref=True), get('batch'), get('hyper_batch'), get('deep')

    def add(name, value, bound, better, arch=arch):
      if value is not None:
        met = value >= bound if better == 'higher' else value <= bound
        out.append({'arch': arch, 'ratio': name, 'value': value, 'bound': bound,
                    'better': better, 'met': bool(met)})

    if ref and ref.get('fraction_of_matmul') is not None:
      add(f"single b{ref['batch_size']} share of the matmul rate", ref['fraction_of_matmul'],
          0.6 if arch == 'mlp' else 0.2, 'higher')
    if batch and 'cost_x_single' in batch:
      add('batch ensemble step / single step (same unique batch)', batch['cost_x_single'],
          batch['num_members'], 'lower')
    if batch and hyper:
      add('hyper-batch step / batch step', batch['steps_per_second'] / hyper['steps_per_second'],
          2.0, 'lower')
    if deep and 'cost_x_single' in deep:
      add('vectorised deep ensemble speed-up over members in turn',
          deep['num_members'] / deep['cost_x_single'], 1.0, 'higher')
  return out


def check_targets(result: dict, args: argparse.Namespace) -> list[dict]:
  """PERFORMANCE.md targets (MLP workload), on this run's medians (and best blocks, for context)."""
  if args.reference_batch_size != args.num_members * args.batch_size:
    return []
  rows = {(r['method'], r['ce_only'], r['reference']): r
          for r in result['models'] if r['arch'] == 'mlp'}
  out = []

  def check(name, bound, get):
    values = [get(suffix) for suffix in ('', '_best')]
    if None not in values:
      out.append({'target': name, 'value': values[0], 'value_best': values[1], 'bound': bound,
                  'met': bool(values[0] >= bound)})

  x = lambda method: lambda sfx: (rows[(method, False, False)][f'x_reference{sfx}']
                                  if (method, False, False) in rows else None)
  check('batch ensemble × b512', 0.80, x('batch'))
  check('deep ensemble × b512', 0.75, x('deep'))
  check('batch ensemble / deep ensemble steps/s', 1.0,
        lambda sfx: x('batch')(sfx) / x('deep')(sfx)
        if x('batch')(sfx) and x('deep')(sfx) else None)
  check('hyper-batch (λ-dependent L2) × b512', 0.44, x('hyper_batch'))
  ref = rows.get(('single', False, True))
  check('single b512 fraction of matmul rate', 0.60,
        lambda sfx: ref.get(f'fraction_of_matmul{sfx}') if ref else None)
  return out


def print_report(result: dict) -> None:
  mm = result['matmul']
  print(f"\nfloat32 {mm['size']}² jnp.dot: {mm['gflops_per_second']:.1f} GFLOP/s median, "
        f"{mm['gflops_per_second_best']:.1f} best, over {len(mm['block_seconds'])} rounds")
  header = (f"{'model':<38} {'B':>4} {'rows':>5} {'steps/s':>8} {'ex/s':>7} {'× b512':>7} "
            f"{'(best)':>6} {'cost×1':>6} {'GFLOP':>6} {'GFLOP/s':>7} {'%mm':>4}")
  print(header)
  print('-' * len(header))
  for r in result['models']:
    def fmt(key, spec, row=r):
      return format(row[key], spec) if row.get(key) is not None else '-'
    gflop = format(r['flops'] / 1e9, '.3f') if r.get('flops') else '-'
    frac = format(100 * r['fraction_of_matmul'], '.0f') if r.get('fraction_of_matmul') else '-'
    print(f"{r['label']:<38} {r['batch_size']:>4} {r['member_rows']:>5} "
          f"{fmt('steps_per_second', '.1f'):>8} {fmt('examples_per_second', '.0f'):>7} "
          f"{fmt('x_reference', '.3f'):>7} {fmt('x_reference_best', '.3f'):>6} "
          f"{fmt('cost_x_single', '.2f'):>6} {gflop:>6} {fmt('gflops_per_second', '.1f'):>7} "
          f"{frac:>4}")
  for note in result['notes']:
    print(f'note: {note}')
  if result['ratios']:
    print('\nRatios (medians of this run; PERFORMANCE.md bounds):')
    for t in result['ratios']:
      sign = '>=' if t['better'] == 'higher' else '<='
      print(f"  {'met ' if t['met'] else 'MISS'}  {t['arch']:<6} {t['ratio']:<56} "
            f"{t['value']:.3f}  {sign} {t['bound']:g}")
  for e in result.get('end_to_end', []):
    print(f"\nreal loop, {e['label']}: {e['steps']} steps in {e['train_seconds']:.1f} s of "
          f"training ({e['compile_seconds']:.1f} s of it compiling) = "
          f"{e['loop_steps_per_second']:.2f} steps/s without compilation; step benchmark "
          f"{e['benchmark_steps_per_second']:.2f} → "
          f"{e['loop_over_benchmark']:.2f} (target >= 0.8); wall {e['wall_seconds']:.1f} s with "
          'data loading and final evaluation')
  if result['targets']:
    print('\nPERFORMANCE.md targets (MLP workload; median, best block in brackets):')
    for t in result['targets']:
      print(f"  {'met ' if t['met'] else 'MISS'}  {t['target']:<42} {t['value']:.3f} "
            f"({t['value_best']:.3f})  target >= {t['bound']:g}")


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--methods', default='single,deep,batch,hyper_batch',
                 help='comma list of method names; unregistered ones are skipped with a note')
  p.add_argument('--archs', default='mlp', help='comma list of architecture names')
  p.add_argument('--dataset', default=None, choices=sorted(DATASETS),
                 help="input shape and classes; default: each architecture's own")
  p.add_argument('--config_args', default='',
                 help="appended to each config file's argument string, e.g. 'smoke'")
  p.add_argument('--batch_size', type=int, default=128, help='unique examples per step')
  p.add_argument('--reference_batch_size', type=int, default=512,
                 help='batch of the single-model reference ("× b512")')
  p.add_argument('--num_members', type=int, default=4)
  p.add_argument('--ce_only_methods', default='hyper_batch',
                 help='methods also timed without their L2 terms; empty for none')
  p.add_argument('--dropout', type=float, default=0.0, help='dropout rate of every member')
  p.add_argument('--hyper_tuned', default='l2',
                 help='hyper_batch tunes the hyperparameters whose names contain one of these '
                 "comma-separated strings ('l2': every L2 group); empty: the config's space")
  p.add_argument('--learning_rate', type=float, default=0.01)
  p.add_argument('--warmup_steps', type=int, default=3, help='steps run before calibration')
  p.add_argument('--block_seconds', type=float, default=0.3, help='length of a timed block')
  p.add_argument('--rounds', type=int, default=15, help='timed blocks per workload')
  p.add_argument('--e2e_method', default='',
                 help='also run this method (e.g. batch) through the real training loop for '
                 '--e2e_epochs epochs on each architecture\'s real dataset, after the timed rounds')
  p.add_argument('--e2e_epochs', type=float, default=1.0)
  p.add_argument('--xla_flags', default='', help='appended to $XLA_FLAGS before the backend starts')
  p.add_argument('--out', default=None, help='write the results here as JSON')
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.xla_flags:
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
  t_start = time.perf_counter()
  mesh = sharding.create_mesh()
  specs, notes = model_specs(args)
  matmul = prepare_matmul(args)
  models = []
  for spec in specs:
    print(f'compiling {spec.label} ...', flush=True)
    models.append(prepare_model(spec, args, mesh))
  workloads = [matmul, *models]
  for i in range(args.rounds):
    # Rotate the order every round so no workload always follows the same neighbour.
    k = i % len(workloads)
    for w in workloads[k:] + workloads[:k]:
      w.time_block()
  result = summarise(models, matmul)
  result['end_to_end'] = [end_to_end(w, args) for w in models
                          if args.e2e_method and w.spec.method == args.e2e_method
                          and not w.spec.ce_only and not w.spec.reference]
  result['notes'] = notes
  result['targets'] = check_targets(result, args)
  result['environment'] = {
      'jax': jax.__version__, 'backend': jax.default_backend(), 'device': str(jax.devices()[0]),
      'device_count': jax.device_count(), 'cpu_count': os.cpu_count(),
      'machine': platform.processor() or platform.machine(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'command': ' '.join(sys.argv),
      'wall_seconds': time.perf_counter() - t_start,
  }
  result['args'] = vars(args)
  print_report(result)
  print(f"\n(total {result['environment']['wall_seconds']:.0f} s)")
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
  return result


if __name__ == '__main__':
  main()
