"""End-to-end runs of `train.train_and_evaluate`: files written, their contents, learning, reruns.

The smoke runs (a few seconds each) check the output interface of docs/design.md §9 for every
method ×
architecture on the embedded digits and once on TFDS-mocked Fashion-MNIST; metrics.json must equal
the metrics recomputed from the saved predictions. A short real run checks that learning happens.
"""

from __future__ import annotations

import glob
import itertools
import json
import os

import numpy as np
import pytest

from hyper_ensembles import train
from hyper_ensembles.data.registry import load_dataset
from hyper_ensembles.maths import metrics as metrics_lib
from hyper_ensembles.training import steps
from tests.conftest import smoke_config

SET_KEYS = {'nll', 'accuracy', 'ece', 'brier', 'gibbs_nll', 'gibbs_accuracy', 'disagreement',
            'avg_kl', 'member_nll', 'member_accuracy'}
EVAL_SETS = ('validation', 'test')


def _check_run(config, workdir: str, returned: dict) -> None:
  """Every file of docs/design.md §9 exists, has the right shapes, and agrees with the others."""
  num_members = 1 if config.method == 'single' else config.num_members
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics == json.loads(json.dumps(returned))  # what the function returned is the file
  assert set(EVAL_SETS) <= set(metrics)
  assert isinstance(metrics['num_params'], int) and metrics['num_params'] > 0
  assert isinstance(metrics['train_seconds'], float) and metrics['train_seconds'] > 0

  dataset = load_dataset(config.dataset, config.data)
  for name in EVAL_SETS:
    split = getattr(dataset, name)
    values = metrics[name]
    assert set(values) >= SET_KEYS, name
    scalars = [values[k] for k in SET_KEYS if not k.startswith('member_')]
    assert np.all(np.isfinite(scalars)), (name, values)
    assert len(values['member_nll']) == len(values['member_accuracy']) == num_members
    assert 0.0 <= values['accuracy'] <= 1.0 and values['nll'] > 0

    with np.load(os.path.join(workdir, 'predictions', f'{name}.npz')) as data:
      logits, labels = data['logits'], data['labels']
    n = min(config.max_eval_examples, len(split)) if config.max_eval_examples > 0 else len(split)
    assert logits.dtype == np.float32
    assert logits.shape == (num_members, n, dataset.info.num_classes)
    assert labels.shape == (n,) and np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(labels, split.labels[:n])  # every example once, in order
    assert np.all(np.isfinite(logits))

    recomputed = metrics_lib.compute_metrics(logits, labels)
    for key in SET_KEYS:
      np.testing.assert_allclose(values[key], recomputed[key], rtol=1e-6, atol=1e-9,
                                 err_msg=f'{name}/{key}')

  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert (saved['method'], saved['arch'], saved['dataset']) == (
      config.method, config.arch, config.dataset)
  assert saved['num_train_steps'] == config.num_train_steps
  assert glob.glob(os.path.join(workdir, '**', 'events.out.tfevents.*'), recursive=True)
  steps = [int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()]
  assert config.num_train_steps in steps
  assert len(steps) <= config.max_checkpoints_to_keep


@pytest.mark.parametrize('arch', ['mlp', 'lenet'])
@pytest.mark.parametrize('method', ['single', 'deep', 'batch'])
def test_smoke_run_writes_every_output(smoke_run, method, arch):
  workdir = smoke_run(method, arch)
  with open(os.path.join(workdir, 'metrics.json')) as f:
    returned = json.load(f)
  _check_run(smoke_config(method, arch), workdir, returned)


def _mlp_params(d_in, hidden, classes):
  dims = [d_in, *hidden, classes]
  return list(itertools.pairwise(dims))


@pytest.mark.parametrize('method', ['single', 'deep', 'batch'])
def test_mlp_parameter_counts(smoke_run, method):
  """num_params against the formulas: M full networks, or shared weights + M(d_in + 2·d_out)."""
  config = smoke_config(method, 'mlp')
  with open(os.path.join(smoke_run(method, 'mlp'), 'metrics.json')) as f:
    num_params = json.load(f)['num_params']
  layer_dims = _mlp_params(64, config.model.mlp.hidden, 10)
  plain = sum(i * o + o for i, o in layer_dims)
  m = config.num_members
  expected = {
      'single': plain,
      'deep': m * plain,
      'batch': sum(i * o + m * (i + 2 * o) for i, o in layer_dims),
  }[method]
  assert num_params == expected


def test_rerun_of_finished_workdir_does_not_train(smoke_run, monkeypatch):
  workdir = smoke_run('single', 'mlp')
  metrics_path = os.path.join(workdir, 'metrics.json')
  before = os.stat(metrics_path).st_mtime_ns
  with open(metrics_path) as f:
    expected = json.load(f)

  def no_training(*args, **kwargs):
    raise AssertionError('a finished run must not build a train step again')

  monkeypatch.setattr(steps, 'make_train_step', no_training)
  result = train.train_and_evaluate(smoke_config('single', 'mlp'), workdir)
  assert result == expected
  assert os.stat(metrics_path).st_mtime_ns == before


def test_tfds_mock_fashion_mnist_smoke_run(tmp_path):
  import tensorflow_datasets as tfds  # Lazy: importing TF costs seconds.

  config = smoke_config('deep', 'mlp', dataset='fashion_mnist', data__source='tfds')
  with tfds.testing.mock_data(num_examples=80):
    result = train.train_and_evaluate(config, str(tmp_path))
    # Mocked splits hold 80 examples each: 76 train / 4 validation / 80 test.
    assert result['num_params'] == config.num_members * sum(
        i * o + o for i, o in _mlp_params(28 * 28, config.model.mlp.hidden, 10))
    _check_run(config, str(tmp_path), result)
  with np.load(tmp_path / 'predictions' / 'validation.npz') as data:
    assert data['logits'].shape == (config.num_members, 4, 10)


def test_short_run_learns_digits(tmp_path):
  """A few hundred steps of an MLP on digits: test accuracy far above chance (0.1)."""
  config = smoke_config(
      'single', 'mlp', smoke=False, num_train_steps=300, eval_every_steps=0,
      checkpoint_every_steps=300, log_every_steps=100)
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result['test']['accuracy'] > 0.8, result['test']
  assert result['validation']['accuracy'] > 0.8, result['validation']
  assert result['test']['nll'] < 1.0, result['test']
