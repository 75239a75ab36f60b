"""Every config file loads, is locked, and its smoke variant initialises every method (no training).

Config files are loaded the way `--config=configs/<file>.py:<args>` loads them (by path), so a file
that only works when imported as a module would fail here too.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import os

import jax
import jax.numpy as jnp
import pytest
from flax.linen import meta

from hyper_ensembles.data.dataset import DatasetInfo
from hyper_ensembles.data.registry import DATASETS
from hyper_ensembles.methods.base import split_variables
from hyper_ensembles.methods.registry import METHODS, create_method
from hyper_ensembles.models.registry import ARCHITECTURES
from hyper_ensembles.training.state import TrainState
from tests.conftest import REPO_ROOT

# Experiment families; configs/saved.py is not one: it reloads a run's config.json (its argument is
# that path) and has its own round-trip tests (tests/test_ray_sweep.py).
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(REPO_ROOT, 'configs', '*.py'))
                      if os.path.basename(p) != 'saved.py')
# Shapes the smoke initialisation needs, without loading any data.
IMAGE_SHAPES = {'digits': (8, 8, 1), 'fashion_mnist': (28, 28, 1), 'cifar10': (32, 32, 3),
                'cifar100': (32, 32, 3)}
NUM_CLASSES = {'cifar100': 100}
# The Foundation issue's combinations; default.py must support at least these.
FOUNDATION_METHODS = ('single', 'deep', 'batch')
FOUNDATION_ARCHS = ('mlp', 'lenet')
FOUNDATION_DATASETS = ('digits', 'fashion_mnist')


def _load(path: str):
  spec = importlib.util.spec_from_file_location(
      f'_config_{os.path.basename(path)[:-3]}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _default():
  return _load(os.path.join(REPO_ROOT, 'configs', 'default.py'))


def test_config_files_exist():
  assert os.path.join(REPO_ROOT, 'configs', 'default.py') in CONFIG_FILES


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
@pytest.mark.parametrize('arg', [None, 'smoke'])
def test_every_config_file_loads_locked(path, arg):
  config = _load(path).get_config(arg)
  assert config.is_locked
  assert config.method in METHODS and config.arch in ARCHITECTURES and config.dataset in DATASETS
  with pytest.raises(AttributeError):
    config.learning_rat = 0.1  # a mistyped top-level key
  with pytest.raises(AttributeError):
    config.optimizer.learning_rat = 0.1  # and a nested one
  with pytest.raises(TypeError):
    config.batch_size = 'large'  # fields keep their types


@pytest.mark.parametrize('method,arch,dataset', list(itertools.product(
    FOUNDATION_METHODS, FOUNDATION_ARCHS, FOUNDATION_DATASETS)))
def test_default_config_combinations(method, arch, dataset):
  module = _default()
  for smoke in ('', ',smoke'):
    config = module.get_config(f'method={method},arch={arch},dataset={dataset}{smoke}')
    assert (config.method, config.arch, config.dataset) == (method, arch, dataset)
  full, smoke = module.get_config(f'method={method}'), module.get_config(f'method={method},smoke')
  assert smoke.num_train_steps > 0
  assert full.num_train_steps <= 0 or full.num_train_steps > smoke.num_train_steps


def _abstract_init(config):
  """Initialises the method of a config under `jax.eval_shape` and predicts on a dummy batch."""
  shape = IMAGE_SHAPES[config.dataset]
  info = DatasetInfo(name=config.dataset, num_classes=NUM_CLASSES.get(config.dataset, 10),
                     image_shape=shape, mean=(0.5,) * shape[-1], std=(0.25,) * shape[-1])
  method = create_method(config, info, num_train=1000)
  if method.vectorized:
    rng = jax.random.split(jax.random.PRNGKey(0), method.num_members)
  else:
    rng = jax.random.PRNGKey(0)

  def init_and_predict(rng):
    variables = meta.unbox(method.init_variables(rng))
    params, model_state = split_variables(variables)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                       opt_state=None, hparams=method.initial_hparams(),
                       tuner=method.init_tuner(jax.random.PRNGKey(1)), rng=rng,
                       train_seconds=jnp.zeros(()))
    return params, method.predict(state, jnp.zeros((5, *shape), jnp.uint8))

  params, logits = jax.eval_shape(init_and_predict, rng)
  return method, params, logits, info


@pytest.mark.parametrize('method,arch', list(itertools.product(sorted(METHODS),
                                                               FOUNDATION_ARCHS)))
def test_default_smoke_variant_initialises_with_eval_shape(method, arch):
  config = _default().get_config(f'method={method},arch={arch},smoke')
  method_obj, params, logits, info = _abstract_init(config)
  assert sum(x.size for x in jax.tree.leaves(params)) > 0
  assert logits.shape == (method_obj.num_members, 5, info.num_classes)


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_config_files_smoke_variant_initialises(path):
  config = _load(path).get_config('smoke')
  if config.dataset not in IMAGE_SHAPES:
    pytest.skip(f'no image shape known for {config.dataset}')
  method, _, logits, info = _abstract_init(config)
  assert logits.shape == (method.num_members, 5, info.num_classes)


@pytest.mark.parametrize('arg,valid', [
    ('method=bogus', sorted(METHODS)),
    ('arch=bogus', sorted(ARCHITECTURES)),
    ('dataset=bogus', sorted(DATASETS)),
    ('methd=deep', ['method=', 'arch=', 'dataset=', 'smoke']),
    ('smok', ['method=', 'arch=', 'dataset=', 'smoke']),
])
def test_unknown_names_and_args_list_the_valid_ones(arg, valid):
  with pytest.raises(ValueError) as excinfo:
    _default().get_config(arg)
  message = str(excinfo.value)
  assert 'bogus' in message or arg in message
  for name in valid:
    assert name in message, (name, message)


@pytest.mark.parametrize('arg', ['method=hyper_batch,arch=lenet', 'method=hyper_deep',
                                 'method=deep,dataset=fashion_mnist'])
def test_saved_config_round_trips_a_recorded_config(tmp_path, arg):
  """configs/saved.py:DIR/config.json gives back the config a run recorded, types included."""
  from hyper_ensembles.runs import workdir as workdir_lib
  saved = _load(os.path.join(REPO_ROOT, 'configs', 'saved.py'))
  config = _default().get_config(arg)
  path = tmp_path / 'config.json'
  workdir_lib.write_json(str(path), workdir_lib.config_to_dict(config))
  again = saved.get_config(str(path))
  assert again.is_locked
  assert workdir_lib.config_to_dict(again) == workdir_lib.config_to_dict(config)
  assert type(again.model.mlp.hidden) is tuple and again.model.mlp.hidden == config.model.mlp.hidden
  with pytest.raises(FileNotFoundError, match=r'config\.json after the colon'):
    saved.get_config(str(tmp_path / 'missing.json'))
