"""CIFAR pipelines (TFDS mocked), corrupted and OOD evaluation sets, and ResNet end-to-end smoke.

Everything runs offline: TFDS datasets come from `tfds.testing.mock_data` (random images of the
right shape; every mocked dataset gets the same images, so OOD scores are uninformative there and
the OOD metric values are checked on hand-built logits instead), CIFAR-100-C from small `.npy`
stand-ins written here.
"""

import json
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.linen import meta

from configs import resnet20 as resnet20_config
from hyper_ensembles.data import cifar, corrupted, ood, registry
from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.preprocess import crop_flip, normalize, preprocess
from hyper_ensembles.evaluation import results as results_lib


def data_config(**overrides) -> ml_collections.ConfigDict:
  """The data section of the ResNet configs, with overrides."""
  config = resnet20_config.get_config('method=single,smoke').data
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(overrides)
  return config


@pytest.fixture
def mock_tfds():
  import tensorflow_datasets as tfds

  def mock(num_examples):
    return tfds.testing.mock_data(num_examples=num_examples)

  return mock


# --- CIFAR-10 / CIFAR-100 ------------------------------------------------------------------------


@pytest.mark.parametrize('name, num_classes, mean, std', [
    ('cifar10', 10, cifar.CIFAR10_MEAN, cifar.CIFAR10_STD),
    ('cifar100', 100, cifar.CIFAR100_MEAN, cifar.CIFAR100_STD),
])
def test_cifar_shapes_split_sizes_and_statistics(mock_tfds, name, num_classes, mean, std):
  with mock_tfds(40):
    ds = registry.load_dataset(name, data_config())
  # Mocked train and test splits hold 40 examples each; validation is the last 5 % of train.
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (38, 2, 40)
  for split in (ds.train, ds.validation, ds.test):
    assert split.images.shape[1:] == (32, 32, 3) and split.images.dtype == np.uint8
    assert split.labels.dtype == np.int32 and 0 <= split.labels.min() <= split.labels.max() < (
        num_classes)
  assert ds.info.num_classes == num_classes and ds.info.image_shape == (32, 32, 3)
  assert (ds.info.mean, ds.info.std, ds.info.augmentation) == (mean, std, 'crop_flip')
  assert ds.extra_eval == {}  # corrupted / OOD sets are off in the smoke configs


def test_normalisation_is_per_channel_and_augmentation_a_crop_or_flip():
  info = DatasetInfo('cifar10', 10, (32, 32, 3), cifar.CIFAR10_MEAN, cifar.CIFAR10_STD,
                     'crop_flip')
  images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  expected = (images / 255.0 - np.array(cifar.CIFAR10_MEAN)) / np.array(cifar.CIFAR10_STD)
  np.testing.assert_allclose(normalize(images, info), expected, rtol=1e-5, atol=1e-5)
  # Without a key (evaluation) preprocessing is the normalisation only.
  np.testing.assert_array_equal(preprocess(images, info), normalize(images, info))
  # With a key (training) every image is a 32×32 window of the zero-padded normalised image,
  # possibly flipped, and the batch as a whole changes.
  x = np.asarray(normalize(images, info))
  out = np.asarray(preprocess(images, info, jax.random.PRNGKey(3)))
  np.testing.assert_array_equal(out, np.asarray(crop_flip(jax.random.PRNGKey(3), x)))
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  for i in range(len(images)):
    windows = [padded[i, a:a + 32, b:b + 32] for a in range(9) for b in range(9)]
    assert any(np.array_equal(out[i], w) or np.array_equal(out[i], w[:, ::-1])
               for w in windows), i
  assert not np.array_equal(out, x)


@pytest.mark.parametrize('method_name', ['single', 'batch', 'hyper_batch'])
def test_methods_augment_train_batches_only(monkeypatch, method_name):
  """The train loss preprocesses with a key (augmentation), `predict` without one.

  Traced only (`jax.eval_shape`): what is checked is which call receives a key, and
  `preprocess` itself is checked numerically above.
  """
  import importlib

  from hyper_ensembles.methods.registry import create_method

  calls = []

  def spy(images, info, rng=None):
    calls.append(rng is not None)
    return preprocess(images, info, rng)

  for module in ('base', 'batch', 'deep', 'hyper_batch'):
    monkeypatch.setattr(importlib.import_module(f'hyper_ensembles.methods.{module}'),
                        'preprocess', spy)
  config = resnet20_config.get_config(f'method={method_name},smoke')
  info = DatasetInfo('cifar10', 10, (32, 32, 3), cifar.CIFAR10_MEAN, cifar.CIFAR10_STD,
                     'crop_flip')
  method = create_method(config, info, num_train=100)
  variables = jax.eval_shape(lambda: meta.unbox(method.init_variables(
      jax.random.split(jax.random.PRNGKey(0), method.num_members) if method.vectorized
      else jax.random.PRNGKey(0))))
  tuner = jax.eval_shape(lambda: method.init_tuner(jax.random.PRNGKey(0)))
  hparams = method.initial_hparams()
  orders = method.num_data_orders
  batch = {'images': jnp.zeros((orders, 4, 32, 32, 3), jnp.uint8),
           'labels': jnp.zeros((orders, 4), jnp.int32)}
  # A pytree for eval_shape, viewed as the state object the method reads inside the trace.
  tree = {'params': variables['params'], 'tuner': tuner, 'hparams': hparams,
          'model_state': {'batch_stats': variables['batch_stats']}, 'rng': jax.random.PRNGKey(0)}

  def loss(tree, batch):
    state = types.SimpleNamespace(**tree)
    if method.vectorized:  # the train loop vmaps one member's loss over the member axis
      return jax.vmap(lambda p, s, h, b: method.loss(p, s, h, None, b, jax.random.PRNGKey(1))[0])(
          state.params, state.model_state, state.hparams, batch)
    return method.loss(state.params, state.model_state, state.hparams, state.tuner, batch,
                       jax.random.PRNGKey(1))[0]

  jax.eval_shape(loss, tree, batch)
  assert calls and all(calls)
  calls.clear()
  logits = jax.eval_shape(lambda tree, images: method.predict(types.SimpleNamespace(**tree),
                                                              images), tree, batch['images'][0])
  assert calls == [False] and logits.shape == (method.num_members, 4, 10)


# --- corrupted test sets --------------------------------------------------------------------------


def test_every_cifar10_c_config_is_named_explicitly():
  import tensorflow_datasets as tfds

  tfds_configs = {c.name for c in tfds.builder_cls('cifar10_corrupted').BUILDER_CONFIGS}
  ours = {corrupted.tfds_name(t, s) for t in corrupted.CIFAR10_TYPES
          for s in corrupted.SEVERITIES}
  assert len(ours) == 95
  assert ours == {f'cifar10_corrupted/{c}' for c in tfds_configs}
  assert set(corrupted.CIFAR10_OFFICIAL) <= set(corrupted.CIFAR10_TYPES)
  assert set(corrupted.CIFAR100_OFFICIAL) <= set(corrupted.CIFAR100_TYPES)
  assert corrupted.corruption_types('cifar10', 'official') == corrupted.CIFAR10_OFFICIAL
  assert len(corrupted.CIFAR10_OFFICIAL) == 15 and len(corrupted.CIFAR100_OFFICIAL) == 17
  assert corrupted.corruption_types('cifar100', 'all') == corrupted.CIFAR100_TYPES
  assert corrupted.corruption_types('cifar10', ' fog, frost ') == ('fog', 'frost')
  assert corrupted.corruption_types('digits', '') == ()
  with pytest.raises(ValueError, match='glass_blur'):
    corrupted.corruption_types('cifar10', 'glass_blur')  # CIFAR-100-C's name, not TFDS's
  with pytest.raises(ValueError, match='cifar10, cifar100, digits, fashion_mnist only'):
    corrupted.corruption_types('svhn_cropped', 'official')


@pytest.mark.parametrize('name', [
    'cifar10_corrupted', 'cifar10_corrupted/fog', 'cifar10_corrupted/fog_6',
    'cifar10_corrupted/glass_blur_1'])
def test_bare_or_partial_cifar10_corrupted_names_are_refused(name):
  with pytest.raises(ValueError, match='default config'):
    corrupted.check_tfds_name(name)


def test_set_names_round_trip_and_aggregates_are_not_sets():
  assert corrupted.check_tfds_name('cifar10_corrupted/fog_3:1.0.0')
  assert corrupted.set_name('gaussian_noise', 3) == 'corrupt_gaussian_noise_3'
  assert corrupted.parse_set_name('corrupt_gaussian_noise_3') == ('gaussian_noise', 3)
  for name in ('corrupt_severity_2', 'corrupt_mean', 'test', 'ood_svhn_cropped'):
    assert corrupted.parse_set_name(name) is None


def test_cifar10_c_loads_each_type_and_severity_by_name(mock_tfds):
  config = data_config(corruptions='fog,frosted_glass_blur', corruption_severities=(1, 3))
  with mock_tfds(5):
    sets = corrupted.load_corrupted('cifar10', config)
  assert sorted(sets) == ['corrupt_fog_1', 'corrupt_fog_3', 'corrupt_frosted_glass_blur_1',
                          'corrupt_frosted_glass_blur_3']
  for split in sets.values():
    assert split.images.shape == (5, 32, 32, 3) and split.labels.max() < 10


def test_cifar100_c_reads_the_npy_release(tmp_path):
  per_severity = 4
  labels = np.arange(5 * per_severity) % 100
  np.save(tmp_path / 'labels.npy', labels.astype(np.uint8))
  for corruption in ('fog', 'glass_blur'):
    images = np.repeat(np.arange(1, 6, dtype=np.uint8), per_severity)[:, None, None, None]
    np.save(tmp_path / f'{corruption}.npy', np.broadcast_to(images, (20, 32, 32, 3)))
  config = data_config(corruptions='fog,glass_blur', corruption_severities=(2, 5),
                       cifar100_c_dir=str(tmp_path))
  sets = corrupted.load_corrupted('cifar100', config)
  assert sorted(sets) == ['corrupt_fog_2', 'corrupt_fog_5', 'corrupt_glass_blur_2',
                          'corrupt_glass_blur_5']
  for name, split in sets.items():
    severity = corrupted.parse_set_name(name)[1]
    assert split.images.shape == (per_severity, 32, 32, 3)
    assert np.all(np.asarray(split.images) == severity)  # the right block of the stacked file
    np.testing.assert_array_equal(
        split.labels, labels[(severity - 1) * per_severity:severity * per_severity])
  with pytest.raises(ValueError, match='cifar100_c_dir'):
    corrupted.load_corrupted('cifar100', data_config(corruptions='fog'))
  with pytest.raises(FileNotFoundError, match=r'snow\.npy'):
    corrupted.load_corrupted('cifar100', data_config(corruptions='snow',
                                                     cifar100_c_dir=str(tmp_path)))
  np.save(tmp_path / 'zoom_blur.npy', np.zeros((20, 28, 28, 3), np.uint8))
  with pytest.raises(ValueError, match='expected uint8'):
    corrupted.load_corrupted('cifar100', data_config(corruptions='zoom_blur',
                                                     cifar100_c_dir=str(tmp_path)))


# --- OOD sets and the registry ---------------------------------------------------------------


def test_registry_adds_corrupted_and_ood_sets(mock_tfds):
  config = data_config(corruptions='fog', corruption_severities=(2,),
                       ood_datasets=('svhn_cropped',))
  with mock_tfds(20):
    ds = registry.load_dataset('cifar10', config)
  assert sorted(ds.extra_eval) == ['corrupt_fog_2', 'ood_svhn_cropped']
  assert ood.is_ood_set('ood_svhn_cropped') and not ood.is_ood_set('corrupt_fog_2')
  assert ds.extra_eval['ood_svhn_cropped'].images.shape == (20, 32, 32, 3)
  with mock_tfds(5), pytest.raises(ValueError, match='training data has'):
    ood.load_ood(data_config(ood_datasets=('mnist',)), (32, 32, 3))


def test_ood_metrics_against_test_and_corruption_aggregates():
  rng = np.random.default_rng(0)
  n, c = 50, 10
  labels = rng.integers(0, c, n)
  confident = np.where(np.eye(c)[labels][None] > 0, 8.0, 0.0) + 0.01 * rng.standard_normal(
      (2, n, c))
  flat = 0.01 * rng.standard_normal((2, n, c))
  predictions = {'test': (confident, labels), 'ood_svhn_cropped': (flat, labels)}
  for severity, scale in ((1, 1.0), (2, 0.5)):
    for t, shift in (('fog', 0.0), ('frost', 1.0)):
      predictions[corrupted.set_name(t, severity)] = (confident * scale + shift, labels)
  results = results_lib.metrics_from_predictions(predictions)
  o = results['ood_svhn_cropped']
  assert set(o) == {'num_examples', 'auroc_max_prob', 'aupr_max_prob', 'fpr_at_95_tpr_max_prob',
                    'auroc_entropy', 'aupr_entropy', 'fpr_at_95_tpr_entropy'}
  assert o['auroc_max_prob'] == 1.0 and o['auroc_entropy'] == 1.0
  assert o['fpr_at_95_tpr_max_prob'] == 0.0 and o['num_examples'] == n
  assert 'nll' not in o and results['ood_positive_class'] == 'in_distribution'
  for severity in (1, 2):
    agg = results[f'corrupt_severity_{severity}']
    parts = [results[corrupted.set_name(t, severity)] for t in ('fog', 'frost')]
    assert agg['num_sets'] == 2
    np.testing.assert_allclose(agg['nll'], np.mean([p['nll'] for p in parts]))
    np.testing.assert_allclose(agg['ece'], np.mean([p['ece'] for p in parts]))
  everything = [v for k, v in results.items() if corrupted.parse_set_name(k)]
  np.testing.assert_allclose(results['corrupt_mean']['accuracy'],
                             np.mean([v['accuracy'] for v in everything]))
  assert results['corrupt_mean']['num_sets'] == 4
  with pytest.raises(ValueError, match='test set'):
    results_lib.metrics_from_predictions({'ood_svhn_cropped': (flat, labels)})


# --- end-to-end smoke on the tiny ResNet -----------------------------------------------------


@pytest.mark.parametrize('method', ['single', 'deep', 'batch', pytest.param(
    'hyper_batch', marks=pytest.mark.slow)])
def test_resnet20_smoke_end_to_end(mock_tfds, tmp_path, method):
  from hyper_ensembles import train

  config = resnet20_config.get_config(f'method={method},dataset=cifar10,smoke')
  extra = method == 'batch'  # one run also evaluates a corrupted and an OOD set
  with config.unlocked():
    if extra:
      config.data.corruptions = 'fog'
      config.data.corruption_severities = (1, 5)
      config.data.ood_datasets = ('svhn_cropped',)
  # 320 mocked examples: 304 train, 16 validation (one hyper-batch tune batch of 16).
  with mock_tfds(320):
    results = train.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / 'metrics.json') as f:
    assert json.load(f) == json.loads(json.dumps(results))
  members = 1 if method == 'single' else 4
  for name in ('validation', 'test'):
    assert np.isfinite(results[name]['nll']) and len(results[name]['member_nll']) == members
    with np.load(tmp_path / 'predictions' / f'{name}.npz') as data:
      assert data['logits'].shape[0] == members and data['logits'].shape[2] == 10
  assert results['num_params'] > 0
  if extra:
    assert {'corrupt_fog_1', 'corrupt_fog_5', 'corrupt_severity_1', 'corrupt_severity_5',
            'corrupt_mean', 'ood_svhn_cropped'} <= set(results)
    assert 0.0 <= results['ood_svhn_cropped']['auroc_entropy'] <= 1.0
    assert os.path.exists(tmp_path / 'predictions' / 'ood_svhn_cropped.npz')
