"""Tests of the dataset loaders: digits split, IDX reader, TFDS sources (mocked), registry."""

import gzip
import os

import ml_collections
import numpy as np
import pytest

from hyper_ensembles.data import dataset as dataset_lib
from hyper_ensembles.data import digits, fashion_mnist, registry, tfds_source
from hyper_ensembles.data.dataset import ArraySplit

DEBIAN_FASHION_DIR = '/usr/share/datasets/fashion-mnist'


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict({
      'source': 'default',
      'fashion_mnist_dir': DEBIAN_FASHION_DIR,
      'tfds_data_dir': None,
      'validation_fraction': 0.05,
      'split_seed': 0,
  })
  config.update(overrides)
  return config


def _check_split(split: ArraySplit, image_shape, num_classes):
  assert split.images.dtype == np.uint8
  assert split.labels.dtype == np.int32
  assert split.images.shape[1:] == image_shape
  assert split.labels.min() >= 0 and split.labels.max() < num_classes


# --- digits -----------------------------------------------------------------------------------


def test_digits_split_sizes_types_and_stats():
  ds = registry.load_dataset('digits', _data_config())
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (1222, 216, 359)
  assert len(ds.train) + len(ds.validation) + len(ds.test) == 1797
  for split in (ds.train, ds.validation, ds.test):
    _check_split(split, (8, 8, 1), 10)
    assert set(np.unique(split.labels)) == set(range(10))  # Stratified: every class everywhere.
  info = ds.info
  assert (info.name, info.num_classes, info.image_shape, info.augmentation) == (
      'digits', 10, (8, 8, 1), 'none')
  x = ds.train.images / 255.0
  np.testing.assert_allclose(info.mean, [x.mean()], rtol=1e-10)
  np.testing.assert_allclose(info.std, [x.std()], rtol=1e-10)


def test_digits_seventeen_levels_preserved():
  from sklearn.datasets import load_digits

  raw = load_digits().images
  converted = digits.to_uint8(raw)
  levels = np.unique(converted)
  assert levels.size == 17 and levels[0] == 0 and levels[-1] == 255
  # The map is injective level by level, so the raw values are recoverable.
  np.testing.assert_array_equal(np.round(converted / 255.0 * 16), raw)
  ds = digits.load_digits_dataset()
  all_images = np.concatenate([ds.train.images, ds.validation.images, ds.test.images])
  np.testing.assert_array_equal(np.unique(all_images), levels)


def _row_set(split):
  return {img.tobytes() + bytes([lab]) for img, lab in zip(split.images, split.labels)}


def test_digits_splits_disjoint_and_deterministic():
  from sklearn.datasets import load_digits

  labels = load_digits().target
  train, val, test = digits.split_indices(labels, 0.15, split_seed=3)
  assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
  assert sorted(np.concatenate([train, val, test])) == list(range(labels.size))

  a = digits.load_digits_dataset(0.05, split_seed=3)
  b = digits.load_digits_dataset(0.05, split_seed=3)
  c = digits.load_digits_dataset(0.05, split_seed=4)
  for name in ('train', 'validation', 'test'):
    np.testing.assert_array_equal(getattr(a, name).images, getattr(b, name).images)
    np.testing.assert_array_equal(getattr(a, name).labels, getattr(b, name).labels)
  assert not np.array_equal(a.test.images, c.test.images)
  # Disjoint as (image, label) rows up to the digits set's own duplicate images.
  assert len(_row_set(a.test) & _row_set(a.train)) < 10


def test_digits_validation_fraction_rules():
  assert digits.effective_validation_fraction(0.05) == 0.15
  assert digits.effective_validation_fraction(0.3) == 0.3
  assert digits.effective_validation_fraction(0.0) == 0.0
  ds = digits.load_digits_dataset(0.0)
  assert len(ds.validation) == 0 and len(ds.train) == 1797 - 359
  assert ds.validation.images.shape == (0, 8, 8, 1)
  with pytest.raises(ValueError, match='validation_fraction'):
    digits.effective_validation_fraction(1.0)


def test_digits_does_not_import_tensorflow():
  # A fresh interpreter: this test process may already have imported TF for other tests.
  import subprocess
  import sys

  code = (
      'import sys\n'
      'from hyper_ensembles.data import registry\n'
      'import ml_collections\n'
      'cfg = ml_collections.ConfigDict(dict(source="default", validation_fraction=0.05, '
      'split_seed=0))\n'
      'registry.load_dataset("digits", cfg)\n'
      'assert "tensorflow" not in sys.modules, "tensorflow imported"\n'
      'assert "tensorflow_datasets" not in sys.modules, "tfds imported"\n')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


# --- shared helpers ---------------------------------------------------------------------------


def test_holdout_tail_takes_last_fraction_unshuffled():
  images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
  split = ArraySplit(images, np.arange(100, dtype=np.int32) % 7)
  train, val = tfds_source.holdout_tail(split, 0.05)
  np.testing.assert_array_equal(train.images.ravel(), np.arange(95))
  np.testing.assert_array_equal(val.images.ravel(), np.arange(95, 100))
  train, val = tfds_source.holdout_tail(split, 0.0)
  assert (len(train), len(val)) == (100, 0)


def test_channel_stats_matches_numpy():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(50, 4, 5, 3), dtype=np.uint8)
  mean, std = dataset_lib.channel_stats(images)
  x = images / 255.0
  np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-12)
  np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), rtol=1e-12)


# --- Fashion-MNIST IDX reader -----------------------------------------------------------------


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_fashion_dir(directory, n_train, n_test, compress, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in (('train', n_train), ('test', n_test)):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    arrays[split] = (images, labels)
    image_stem, label_stem = fashion_mnist._FILES[split]
    for stem, array, magic in ((image_stem, images, 2051), (label_stem, labels, 2049)):
      data = _idx_bytes(array, magic)
      if compress:
        with gzip.open(os.path.join(directory, stem + '.gz'), 'wb') as f:
          f.write(data)
      else:
        with open(os.path.join(directory, stem), 'wb') as f:
          f.write(data)
  return arrays


@pytest.mark.parametrize('compress', [True, False])
def test_idx_round_trip(tmp_path, compress):
  arrays = _write_fashion_dir(tmp_path, n_train=40, n_test=12, compress=compress)
  config = _data_config(fashion_mnist_dir=str(tmp_path), validation_fraction=0.25)
  ds = registry.load_dataset('fashion_mnist', config)
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (30, 10, 12)
  train_images, train_labels = arrays['train']
  np.testing.assert_array_equal(ds.train.images[..., 0], train_images[:30])
  np.testing.assert_array_equal(ds.validation.images[..., 0], train_images[30:])
  np.testing.assert_array_equal(ds.train.labels, train_labels[:30])
  np.testing.assert_array_equal(ds.validation.labels, train_labels[30:])
  np.testing.assert_array_equal(ds.test.images[..., 0], arrays['test'][0])
  np.testing.assert_array_equal(ds.test.labels, arrays['test'][1])
  for split in (ds.train, ds.validation, ds.test):
    _check_split(split, (28, 28, 1), 10)
  assert ds.info.image_shape == (28, 28, 1) and ds.info.num_classes == 10
  np.testing.assert_allclose(ds.info.mean, [ds.train.images.mean() / 255.0], rtol=1e-10)


def test_idx_bad_magic(tmp_path):
  path = tmp_path / 'labels'
  path.write_bytes(_idx_bytes(np.zeros(5, np.uint8), 2049))
  with pytest.raises(ValueError, match=r'magic number 2049, expected 2051'):
    fashion_mnist.read_idx(str(path), fashion_mnist.IMAGES_MAGIC)


def test_idx_truncated_and_corrupt_gzip(tmp_path):
  path = tmp_path / 'images'
  path.write_bytes(_idx_bytes(np.zeros((3, 2, 2), np.uint8), 2051)[:-1])
  with pytest.raises(ValueError, match='corrupt or truncated'):
    fashion_mnist.read_idx(str(path), fashion_mnist.IMAGES_MAGIC)
  valid_gz = gzip.compress(_idx_bytes(np.zeros((50, 28, 28), np.uint8), 2051))
  damaged = bytearray(valid_gz)
  damaged[20:40] = bytes(b ^ 0xFF for b in damaged[20:40])  # Corrupt the deflate stream.
  for name, data in (('bad_header.gz', b'this is not gzip data at all'),
                     ('truncated.gz', valid_gz[:len(valid_gz) // 2]),
                     ('damaged.gz', bytes(damaged))):
    gz = tmp_path / name
    gz.write_bytes(data)
    with pytest.raises(ValueError, match=str(gz)):
      fashion_mnist.read_idx(str(gz), fashion_mnist.IMAGES_MAGIC)


def test_idx_missing_dir_and_file(tmp_path):
  missing = tmp_path / 'nowhere'
  config = _data_config(fashion_mnist_dir=str(missing))
  with pytest.raises(FileNotFoundError, match=str(missing)) as excinfo:
    registry.load_dataset('fashion_mnist', config)
  assert 'apt-get install dataset-fashion-mnist' in str(excinfo.value)
  assert 'source=tfds' in str(excinfo.value)

  _write_fashion_dir(tmp_path, n_train=4, n_test=2, compress=True)
  os.remove(tmp_path / 't10k-labels-idx1-ubyte.gz')
  with pytest.raises(FileNotFoundError, match='t10k-labels-idx1-ubyte'):
    registry.load_dataset('fashion_mnist', _data_config(fashion_mnist_dir=str(tmp_path)))


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_FASHION_DIR, 'train-images-idx3-ubyte.gz')),
    reason='Debian dataset-fashion-mnist not installed')
def test_real_fashion_mnist_files():
  ds = registry.load_dataset('fashion_mnist', _data_config())
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (57000, 3000, 10000)
  for split in (ds.train, ds.validation, ds.test):
    _check_split(split, (28, 28, 1), 10)
  assert set(np.unique(ds.train.labels)) == set(range(10))
  # Published Fashion-MNIST statistics (full train set): mean 0.2860, std 0.3530.
  assert abs(ds.info.mean[0] - 0.286) < 0.005 and abs(ds.info.std[0] - 0.353) < 0.005


# --- TFDS sources (mocked) --------------------------------------------------------------------


@pytest.mark.parametrize(
    'name, source, image_shape, num_classes, augmentation',
    [
        ('fashion_mnist', 'tfds', (28, 28, 1), 10, 'none'),
        ('cifar10', 'default', (32, 32, 3), 10, 'crop_flip'),
        ('cifar100', 'tfds', (32, 32, 3), 100, 'crop_flip'),
    ])
def test_tfds_sources_mocked(name, source, image_shape, num_classes, augmentation):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=100):
    ds = registry.load_dataset(name, _data_config(source=source))
  # Mocked train and test splits both hold num_examples examples.
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (95, 5, 100)
  for split in (ds.train, ds.validation, ds.test):
    _check_split(split, image_shape, num_classes)
  info = ds.info
  assert (info.name, info.num_classes, info.image_shape, info.augmentation) == (
      name, num_classes, image_shape, augmentation)
  assert len(info.mean) == len(info.std) == image_shape[-1]
  assert all(0 < s < 1 for s in info.std)


def test_tfds_eval_split_mocked():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=7):
    split = tfds_source.load_tfds_eval_split('cifar10_corrupted/fog_3', split='test')
  assert len(split) == 7
  _check_split(split, (32, 32, 3), 10)


# --- registry errors --------------------------------------------------------------------------


def test_unknown_dataset_lists_choices():
  with pytest.raises(ValueError) as excinfo:
    registry.load_dataset('foo', _data_config())
  assert str(excinfo.value) == (
      "Unknown dataset 'foo'; choose one of: cifar10, cifar100, digits, fashion_mnist")


@pytest.mark.parametrize(
    'name, bad_source, valid',
    [
        ('digits', 'tfds', 'default'),
        ('fashion_mnist', 'hdf5', 'default, idx, tfds'),
        ('cifar10', 'idx', 'default, tfds'),
        ('cifar100', 'idx', 'default, tfds'),
    ])
def test_unknown_source_lists_choices(name, bad_source, valid):
  with pytest.raises(ValueError) as excinfo:
    registry.load_dataset(name, _data_config(source=bad_source))
  message = str(excinfo.value)
  assert repr(bad_source) in message and name in message and valid in message


def test_registry_names_match_design():
  assert set(registry.DATASETS) == {'digits', 'fashion_mnist', 'cifar10', 'cifar100'}
