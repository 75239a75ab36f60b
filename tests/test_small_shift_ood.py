"""Shifted and OOD sets of the small datasets: generated corruptions, MNIST, synthetic OOD images.

Oracle and property tests (no golden numbers): the corruptions against scipy / numpy references and
their invariants (range, shape, determinism, monotone severity), MNIST read from IDX files written
here and from mocked TFDS, and one digits smoke run that reports the shifted and OOD metrics.
"""

import json

import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from hyper_ensembles.data import (
    corrupted,
    digits,
    image_corruptions,
    mnist,
    ood,
    registry,
    synthetic_ood,
)
from tests.conftest import smoke_config
from tests.test_data_sources import _idx_bytes


def data_config(dataset: str = 'digits', **overrides) -> ml_collections.ConfigDict:
  """The default config's data section for `dataset`, unlocked, with overrides."""
  config = ml_collections.ConfigDict(smoke_config(dataset=dataset).data.to_dict())
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def digit_images():
  """Float images in [0, 1] at both sizes: 8×8 digits and (a subset of) their 28×28 version."""
  everything = digits.load_all()
  return {'8x8': everything.images[:300].astype(np.float32) / 255.0,
          '28x28': mnist.upscale_to_mnist(everything.images[:120]).astype(np.float64) / 255.0}


# --- the corruptions -----------------------------------------------------------------------------


@pytest.mark.parametrize('size', ['8x8', '28x28'])
def test_every_corruption_keeps_shape_dtype_range_and_grows_with_severity(digit_images, size):
  clean = digit_images[size]
  for corruption in image_corruptions.TYPES:
    deviations = []
    for severity in image_corruptions.SEVERITIES:
      out = image_corruptions.corrupt(clean, corruption, severity, seed=3)
      assert out.shape == clean.shape and out.dtype == clean.dtype, corruption
      assert out.min() >= 0.0 and out.max() <= 1.0, corruption
      again = image_corruptions.corrupt(clean, corruption, severity, seed=3)
      np.testing.assert_array_equal(out, again, err_msg=f'{corruption} not deterministic')
      deviations.append(float(np.abs(out - clean).mean()))
    # ≥ 0.003: about a grey level per pixel on average (the smooth upscaled digits blur least).
    assert deviations[0] > 0.003, f'{corruption} severity 1 barely changes the images'
    assert np.all(np.diff(deviations) > 0), f'{corruption}: {deviations} not increasing'


def test_seeds_and_severities_draw_independent_streams(digit_images):
  clean = digit_images['8x8']
  for corruption in ('gaussian_noise', 'shot_noise', 'impulse_noise', 'rotate', 'translate',
                     'shear'):
    a = image_corruptions.corrupt(clean, corruption, 2, seed=0)
    b = image_corruptions.corrupt(clean, corruption, 2, seed=1)
    assert not np.array_equal(a, b), corruption
  # uint8 in, uint8 out, the same as corrupting the [0, 1] images and rounding.
  images = digits.load_all().images[:50]
  out = image_corruptions.corrupt_uint8(images, 'contrast', 4)
  assert out.dtype == np.uint8 and out.shape == images.shape
  expected = image_corruptions.corrupt(images.astype(np.float32) / 255.0, 'contrast', 4)
  np.testing.assert_array_equal(out, np.round(expected * 255.0).astype(np.uint8))


def test_pixelwise_corruptions_match_their_formulas(digit_images):
  x = digit_images['28x28']
  np.testing.assert_allclose(image_corruptions.corrupt(x, 'brightness', 2), np.clip(x + 0.2, 0, 1))
  mean = x.mean(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(image_corruptions.corrupt(x, 'contrast', 5),
                             (x - mean) * 0.05 + mean, rtol=1e-12)
  np.testing.assert_allclose(image_corruptions.corrupt(x, 'gaussian_blur', 3),
                             np.clip(ndimage.gaussian_filter(x, (0, 1.0, 1.0, 0)), 0, 1))
  salted = image_corruptions.corrupt(x, 'impulse_noise', 5)
  changed = salted != x
  assert set(np.unique(salted[changed])) <= {0.0, 1.0}
  assert 0.2 < np.mean(np.isin(salted, (0.0, 1.0)) & (x > 0)) / np.mean(x > 0) < 0.35


def test_rotation_matches_scipy_rotate():
  # A plus sign is symmetric under quarter turns: rotating it by ±90° must give it back.
  plus = np.zeros((1, 9, 9, 1))
  plus[0, 4, 1:8, 0] = plus[0, 1:8, 4, 0] = 1.0
  for angle in (90.0, -90.0):
    np.testing.assert_allclose(image_corruptions.rotate_by(plus, [angle]), plus, atol=1e-12)
  # Arbitrary images and angles, several channels, a non-square image: scipy.ndimage.rotate.
  rng = np.random.default_rng(0)
  images = rng.random((3, 11, 8, 2))
  angles = np.array([17.0, -40.0, 123.0])
  out = image_corruptions.rotate_by(images, angles)
  for image, angle, got in zip(images, angles, out):
    expected = ndimage.rotate(image, angle, axes=(0, 1), reshape=False, order=1)
    np.testing.assert_allclose(got, np.clip(expected, 0, 1), atol=1e-12)


def _shifted(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """np.roll with the wrapped-around pixels set to zero (the content moves, zeros come in)."""
  out = np.roll(image, (rows, cols), axis=(0, 1))
  out[:rows if rows > 0 else 0] = 0
  out[rows if rows < 0 else out.shape[0]:] = 0
  out[:, :cols if cols > 0 else 0] = 0
  out[:, cols if cols < 0 else out.shape[1]:] = 0
  return out


def test_translation_matches_zero_filled_roll(digit_images):
  rng = np.random.default_rng(1)
  images = rng.random((4, 10, 12, 2))
  shifts = np.array([[2, 3], [-1, 0], [0, -4], [-3, -2]])
  out = image_corruptions.translate_by(images, shifts)
  for image, (rows, cols), got in zip(images, shifts, out):
    np.testing.assert_allclose(got, _shifted(image, rows, cols), atol=1e-12)
  # The `translate` corruption at severity s moves 28×28 images by exactly ±s pixels on each axis.
  clean = digit_images['28x28']
  for severity in (1, 4):
    out = image_corruptions.corrupt(clean, 'translate', severity, seed=5)
    for image, got in zip(clean, out):
      candidates = [_shifted(image, r, c) for r in (-severity, severity)
                    for c in (-severity, severity)]
      assert any(np.allclose(got, cand, atol=1e-9) for cand in candidates)


def test_bad_corruption_arguments_name_the_choices():
  images = np.zeros((2, 8, 8, 1), np.float32)
  with pytest.raises(ValueError, match=r"'fog'.*gaussian_noise.*scale"):
    image_corruptions.corrupt(images, 'fog', 1)
  with pytest.raises(ValueError, match='severity must be one of'):
    image_corruptions.corrupt(images, 'contrast', 6)
  with pytest.raises(ValueError, match='expected float images'):
    image_corruptions.corrupt(images[0], 'contrast', 1)
  with pytest.raises(ValueError, match=r"Unknown digits corruption.*'fog'.*'official', 'all'"):
    corrupted.corruption_types('digits', 'rotate,fog')
  assert corrupted.corruption_types('fashion_mnist', 'all') == image_corruptions.TYPES
  assert corrupted.corruption_types('digits', 'official') == image_corruptions.MNIST_C_TYPES
  with pytest.raises(ValueError, match='corruption_severities'):
    corrupted.load_corrupted('digits', data_config(corruptions='rotate',
                                                   corruption_severities=(0,)),
                             digits.load_all())


def test_registry_corrupts_the_raw_test_images_and_keeps_the_normalisation():
  config = data_config(corruptions='shot_noise,rotate', corruption_severities=(2, 5),
                       generated_eval_seed=7)
  ds = registry.load_dataset('digits', config)
  clean = registry.load_dataset('digits', data_config())
  assert ds.info == clean.info  # statistics of the clean train split, as for the test set
  assert sorted(ds.extra_eval) == ['corrupt_rotate_2', 'corrupt_rotate_5', 'corrupt_shot_noise_2',
                                   'corrupt_shot_noise_5']
  for name, split in ds.extra_eval.items():
    corruption, severity = corrupted.parse_set_name(name)
    np.testing.assert_array_equal(
        split.images, image_corruptions.corrupt_uint8(clean.test.images, corruption, severity, 7))
    np.testing.assert_array_equal(split.labels, clean.test.labels)


# --- OOD sets --------------------------------------------------------------------------------


def test_synthetic_ood_sets_are_seeded_and_shaped():
  for name in synthetic_ood.NAMES:
    a = synthetic_ood.generate(name, 30, (8, 8, 1), seed=0)
    assert a.images.shape == (30, 8, 8, 1) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, synthetic_ood.generate(name, 30, (8, 8, 1)).images)
    assert not np.array_equal(a.images, synthetic_ood.generate(name, 30, (8, 8, 1), 1).images)
  noise = synthetic_ood.generate('uniform_noise', 200, (8, 8, 3)).images
  assert noise.min() == 0 and noise.max() == 255 and abs(noise.mean() - 127.5) < 3
  flat = synthetic_ood.generate('constant', 10, (5, 5, 2)).images
  assert np.all(flat == flat[:, :1, :1, :])
  blobs = synthetic_ood.generate('blobs', 10, (28, 28, 1)).images
  assert np.all(blobs.min(axis=(1, 2, 3)) == 0) and np.all(blobs.max(axis=(1, 2, 3)) == 255)
  with pytest.raises(ValueError, match='uniform_noise, blobs, constant'):
    synthetic_ood.generate('noise', 3, (8, 8, 1))


def test_digits28_is_digits_in_mnist_layout():
  split = mnist.load_digits28()
  everything = digits.load_all()
  assert split.images.shape == (1797, 28, 28, 1) and split.images.dtype == np.uint8
  np.testing.assert_array_equal(split.labels, everything.labels)
  border = np.ones((28, 28), bool)
  border[4:24, 4:24] = False
  assert split.images[:, border].max() == 0
  # Bilinear: a constant 8×8 image stays that constant in its 20×20 box.
  box = mnist.upscale_to_mnist(np.full((1, 8, 8, 1), 200, np.uint8))
  assert np.all(box[0, 4:24, 4:24] == 200)


def test_registry_adds_ood_sets_and_names_the_choices():
  config = data_config(ood_datasets=('uniform_noise,blobs', 'constant'))
  ds = registry.load_dataset('digits', config)
  assert sorted(ds.extra_eval) == ['ood_blobs', 'ood_constant', 'ood_uniform_noise']
  for split in ds.extra_eval.values():
    assert split.images.shape == ds.test.images.shape  # as many as the test set
  with pytest.raises(ValueError, match=r"'mnist' has \(28, 28, 1\).*for digits: uniform_noise"):
    ood.load_ood(data_config(ood_datasets=('uniform_noise', 'mnist')), (8, 8, 1), 'digits')


def test_mnist_from_idx_files(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, 7, dtype=np.uint8)
  (tmp_path / 't10k-images-idx3-ubyte').write_bytes(_idx_bytes(images, 2051))
  (tmp_path / 't10k-labels-idx1-ubyte').write_bytes(_idx_bytes(labels, 2049))
  config = data_config('fashion_mnist', mnist_dir=str(tmp_path), ood_datasets=('mnist',))
  sets = ood.load_ood(config, (28, 28, 1), 'fashion_mnist')
  np.testing.assert_array_equal(sets['ood_mnist'].images[..., 0], images)
  np.testing.assert_array_equal(sets['ood_mnist'].labels, labels)
  (tmp_path / 't10k-labels-idx1-ubyte').unlink()
  with pytest.raises(FileNotFoundError, match=r'MNIST file not found.*t10k-labels.*digits28'):
    ood.load_ood(config, (28, 28, 1), 'fashion_mnist')


def test_mnist_falls_back_to_tfds(tmp_path):
  import tensorflow_datasets as tfds

  config = data_config('fashion_mnist', mnist_dir=str(tmp_path / 'absent'),
                       ood_datasets=('mnist', 'digits28'))
  with tfds.testing.mock_data(num_examples=6):
    sets = ood.load_ood(config, (28, 28, 1), 'fashion_mnist')
    with pytest.raises(ValueError, match=r"Unknown OOD dataset 'no_such_dataset_x'.*digits28"):
      ood.load_ood(data_config(ood_datasets=('no_such_dataset_x',)), (28, 28, 1),
                   'fashion_mnist')
  assert sets['ood_mnist'].images.shape == (6, 28, 28, 1)
  assert sets['ood_digits28'].images.shape == (1797, 28, 28, 1)


# --- end to end ------------------------------------------------------------------------------


def test_digits_smoke_reports_shifted_and_ood_metrics(tmp_path):
  from hyper_ensembles import train

  config = smoke_config(dataset='digits', data__corruptions='all',
                        data__corruption_severities=(1, 3),
                        data__ood_datasets=('uniform_noise', 'blobs'))
  train.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / 'metrics.json') as f:
    results = json.load(f)
  n_types = len(image_corruptions.TYPES)
  assert results['corrupt_severity_3']['num_sets'] == n_types
  assert results['corrupt_mean']['num_sets'] == 2 * n_types
  for name in ('corrupt_mean', 'corrupt_severity_1', 'corrupt_severity_3',
               'corrupt_rotate_3'):
    assert np.isfinite(results[name]['nll']) and 0 <= results[name]['accuracy'] <= 1
  for name in ('ood_uniform_noise', 'ood_blobs'):
    assert 0.0 <= results[name]['auroc_max_prob'] <= 1.0
    assert 0.0 <= results[name]['auroc_entropy'] <= 1.0
    assert (tmp_path / 'predictions' / f'{name}.npz').exists()
  assert results['ood_positive_class'] == 'in_distribution'
