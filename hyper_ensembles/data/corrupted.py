"""Corrupted test sets (CIFAR-10-C, CIFAR-100-C, generated digits / Fashion-MNIST) as named sets.

This file owns the corruption facts and the names of the shifted evaluation sets:

- CIFAR-10-C comes from TFDS `cifar10_corrupted/<type>_<severity>`. Every set is named explicitly
  with its type and severity: a bare `cifar10_corrupted` silently loads TFDS's *default config*
  (one type at severity 1), and `tfds_name` refuses to produce or accept one.
- CIFAR-100-C is not in TFDS; it is read from the original release (Hendrycks & Dietterich 2019):
  a directory `config.data.cifar100_c_dir` with `<type>.npy` (uint8 `[50000, 32, 32, 3]`, the five
  severities stacked in order, 10 000 images each) and `labels.npy`. The arrays are memory-mapped,
  so only the images being evaluated are read.
- digits and Fashion-MNIST have no published corrupted release we can read here: their corrupted
  sets are generated from the dataset's own test split by data/image_corruptions.py (10 types,
  MNIST-C's severities), seeded by `config.data.generated_eval_seed` (default 0). The corrupted
  images are stored as uint8 like the clean ones, so they are normalised exactly as the clean test
  set is.

Which types (`config.data.corruptions`):
  ''         off (the default): no shifted sets;
  'official' the lists the official uncertainty-baselines code reports (its "c-" metrics, our
             reference numbers): 15 types for CIFAR-10, 17 for CIFAR-100; for digits and
             Fashion-MNIST the 7 types of MNIST-C's benchmark list that we implement;
  'all'      every type of the source: 19 for CIFAR-10 (TFDS), 19 for CIFAR-100 (the release),
             10 for digits and Fashion-MNIST;
  'a,b,...'  an explicit comma list of type names of the dataset's source.
Severities: `config.data.corruption_severities` (default 1–5).

Evaluation-set names: `corrupt_<type>_<severity>` (e.g. `corrupt_gaussian_noise_3`); evaluation.py
adds the per-severity means `corrupt_severity_<s>` and the mean over all, `corrupt_mean`.
Memory: the TFDS sets are read into host memory, 30 MB per (type, severity) — 2.3 GB for the
official 15 × 5 of CIFAR-10. The generated Fashion-MNIST sets take 7.8 MB each (390 MB for 'all')
and ~45 s of CPU to generate; the digits sets 23 kB each.
"""

from __future__ import annotations

import os

import numpy as np

from hyper_ensembles.data import image_corruptions, tfds_source
from hyper_ensembles.data.dataset import ArraySplit

PREFIX = 'corrupt_'
SEVERITIES = (1, 2, 3, 4, 5)
IMAGES_PER_SEVERITY = 10_000
TFDS_NAME = 'cifar10_corrupted'

# Every config of TFDS `cifar10_corrupted` is one of these types at severity 1..5.
CIFAR10_TYPES = (
    'brightness', 'contrast', 'defocus_blur', 'elastic', 'fog', 'frost', 'frosted_glass_blur',
    'gaussian_blur', 'gaussian_noise', 'impulse_noise', 'jpeg_compression', 'motion_blur',
    'pixelate', 'saturate', 'shot_noise', 'snow', 'spatter', 'speckle_noise', 'zoom_blur',
)
# The 15 "benchmark" corruptions that uncertainty-baselines evaluates on CIFAR-10 (TFDS names).
CIFAR10_OFFICIAL = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'frosted_glass_blur',
    'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic',
    'pixelate', 'jpeg_compression',
)
# File stems of the CIFAR-100-C release (note `glass_blur`, `elastic_transform`: the release's
# names, which TFDS renamed for CIFAR-10).
CIFAR100_TYPES = (
    'brightness', 'contrast', 'defocus_blur', 'elastic_transform', 'fog', 'frost',
    'gaussian_blur', 'gaussian_noise', 'glass_blur', 'impulse_noise', 'jpeg_compression',
    'motion_blur', 'pixelate', 'saturate', 'shot_noise', 'snow', 'spatter', 'speckle_noise',
    'zoom_blur',
)
# The 17 types uncertainty-baselines evaluates on CIFAR-100-C (its list has no motion_blur, snow).
CIFAR100_OFFICIAL = (
    'brightness', 'contrast', 'defocus_blur', 'elastic_transform', 'fog', 'frost', 'glass_blur',
    'gaussian_blur', 'gaussian_noise', 'impulse_noise', 'jpeg_compression', 'pixelate',
    'saturate', 'shot_noise', 'spatter', 'speckle_noise', 'zoom_blur',
)

# Datasets whose corrupted sets are generated from their own test split (image_corruptions.py).
GENERATED = ('digits', 'fashion_mnist')

_TYPES = {'cifar10': (CIFAR10_TYPES, CIFAR10_OFFICIAL),
          'cifar100': (CIFAR100_TYPES, CIFAR100_OFFICIAL),
          **{name: (image_corruptions.TYPES, image_corruptions.MNIST_C_TYPES)
             for name in GENERATED}}


def set_name(corruption: str, severity: int) -> str:
  """Evaluation-set name of one (type, severity): `corrupt_<type>_<severity>`."""
  return f'{PREFIX}{corruption}_{severity}'


def parse_set_name(name: str) -> tuple[str, int] | None:
  """(type, severity) of a `set_name` result; None for any other evaluation-set name.

  The per-severity and overall aggregates (`corrupt_severity_<s>`, `corrupt_mean`) are not
  per-(type, severity) sets and give None.
  """
  if not name.startswith(PREFIX):
    return None
  corruption, _, severity = name[len(PREFIX):].rpartition('_')
  if not corruption or not severity.isdigit() or corruption == 'severity':
    return None
  return corruption, int(severity)


def tfds_name(corruption: str, severity: int) -> str:
  """TFDS name of one CIFAR-10-C config, e.g. `cifar10_corrupted/fog_3`, validated."""
  if corruption not in CIFAR10_TYPES:
    raise ValueError(
        f'Unknown CIFAR-10-C corruption {corruption!r}; choose from: {", ".join(CIFAR10_TYPES)}')
  if severity not in SEVERITIES:
    raise ValueError(f'Corruption severity must be one of {SEVERITIES}, got {severity!r}')
  return check_tfds_name(f'{TFDS_NAME}/{corruption}_{severity}')


def check_tfds_name(name: str) -> str:
  """Refuses a `cifar10_corrupted` name without an explicit `<type>_<severity>` config."""
  base, _, config = name.partition('/')
  if base == TFDS_NAME:
    corruption, _, severity = config.partition(':')[0].rpartition('_')
    if corruption not in CIFAR10_TYPES or not severity.isdigit() or int(severity) not in SEVERITIES:
      raise ValueError(
          f'{name!r} does not name a CIFAR-10-C config: a bare {TFDS_NAME!r} silently loads '
          f"TFDS's default config only; use {TFDS_NAME}/<type>_<severity>")
  return name


def corruption_types(dataset: str, which: str) -> tuple[str, ...]:
  """The corruption types `config.data.corruptions` selects for `dataset` (see the docstring)."""
  which = which.strip()
  if not which:
    return ()
  if dataset not in _TYPES:
    raise ValueError(
        f'Corrupted test sets exist for {", ".join(_TYPES)} only, not {dataset!r}; '
        "set config.data.corruptions=''")
  available, official = _TYPES[dataset]
  if which == 'official':
    return official
  if which == 'all':
    return available
  types = tuple(t.strip() for t in which.split(',') if t.strip())
  unknown = [t for t in types if t not in available]
  if unknown:
    raise ValueError(
        f'Unknown {dataset} corruption(s) {unknown}; choose from: {", ".join(available)} '
        "(or 'official', 'all')")
  return types


def _check_severities(severities) -> tuple[int, ...]:
  severities = tuple(int(s) for s in severities)
  bad = [s for s in severities if s not in SEVERITIES]
  if bad or not severities:
    raise ValueError(f'corruption_severities must be a non-empty subset of {SEVERITIES}, got '
                     f'{severities}')
  return severities


def load_cifar10_c(types, severities, data_dir: str | None) -> dict[str, ArraySplit]:
  """`{corrupt_<type>_<s>: split}` from TFDS, one `cifar10_corrupted/<type>_<s>` config each."""
  return {set_name(t, s): tfds_source.load_tfds_eval_split(tfds_name(t, s), 'test', data_dir)
          for t in types for s in _check_severities(severities)}


def load_cifar100_c(types, severities, directory: str | None) -> dict[str, ArraySplit]:
  """`{corrupt_<type>_<s>: split}` from the original CIFAR-100-C `.npy` release in `directory`."""
  if not directory:
    raise ValueError(
        'CIFAR-100-C is read from the original .npy release (https://zenodo.org/records/3555552):'
        ' set config.data.cifar100_c_dir to the directory holding <type>.npy and labels.npy')
  severities = _check_severities(severities)
  labels = _load_npy(directory, 'labels').astype(np.int32)
  out = {}
  for corruption in types:
    images = _load_npy(directory, corruption)
    # The release has 10 000 images per severity; any multiple of 5 rows is accepted so that
    # small stand-in files work in tests.
    if (images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8
        or images.shape[0] % len(SEVERITIES) or labels.shape != images.shape[:1]):
      raise ValueError(
          f'{directory}/{corruption}.npy: expected uint8 [5·n, 32, 32, 3] images (n = '
          f'{IMAGES_PER_SEVERITY} in the release) and as many labels, got {images.dtype} '
          f'{images.shape} and {labels.shape}')
    per_severity = images.shape[0] // len(SEVERITIES)
    for s in severities:
      rows = slice((s - 1) * per_severity, s * per_severity)
      out[set_name(corruption, s)] = ArraySplit(images[rows], labels[rows])
  return out


def _load_npy(directory: str, stem: str) -> np.ndarray:
  path = os.path.join(directory, f'{stem}.npy')
  if not os.path.exists(path):
    raise FileNotFoundError(f'CIFAR-100-C file {path} not found (config.data.cifar100_c_dir)')
  # Memory-mapped: 19 types × 150 MB would otherwise all sit in host memory.
  return np.load(path, mmap_mode='r')


def generate_corrupted(test: ArraySplit, types, severities, seed: int) -> dict[str, ArraySplit]:
  """`{corrupt_<type>_<s>: split}` generated from the clean `test` split (labels unchanged)."""
  return {set_name(t, s): ArraySplit(image_corruptions.corrupt_uint8(test.images, t, s, seed),
                                     test.labels)
          for t in types for s in _check_severities(severities)}


def load_corrupted(dataset: str, data_config, test: ArraySplit | None = None
                   ) -> dict[str, ArraySplit]:
  """The shifted evaluation sets the data config asks for (empty when `corruptions` is '').

  `test` is the dataset's clean test split; the generated datasets (`GENERATED`) need it.
  """
  types = corruption_types(dataset, data_config.get('corruptions', '') or '')
  if not types:
    return {}
  severities = data_config.get('corruption_severities', SEVERITIES)
  if dataset in GENERATED:
    if test is None:
      raise ValueError(f'{dataset} corrupted sets are generated from its test split; pass test=')
    return generate_corrupted(test, types, severities,
                              data_config.get('generated_eval_seed', 0) or 0)
  if dataset == 'cifar10':
    return load_cifar10_c(types, severities, data_config.get('tfds_data_dir'))
  return load_cifar100_c(types, severities, data_config.get('cifar100_c_dir'))
