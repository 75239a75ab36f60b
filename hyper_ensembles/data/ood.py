"""Out-of-distribution evaluation sets as named evaluation sets.

This file owns which OOD sets exist and how they are named. `config.data.ood_datasets` is a tuple
of names (default none; on the command line `--config.data.ood_datasets=digits28,uniform_noise`
works too); each becomes evaluation set `ood_<name>` (e.g. `ood_svhn_cropped`):

  name             images                                            for
  'mnist'          MNIST's 10 000 test digits (IDX dir or TFDS)      fashion_mnist (data/mnist.py)
  'digits28'       1 797 scikit-learn digits in MNIST's 28×28 layout fashion_mnist (data/mnist.py)
  'uniform_noise', 'blobs', 'constant'  synthetic, as many as the test set; any dataset
                   (data/synthetic_ood.py, seeded by `config.data.generated_eval_seed`)
  any other name   that TFDS dataset's test split, e.g. 'svhn_cropped' (the paper's CIFAR protocol,
                   26 032 images)

An OOD set's images must have the training data's shape; its labels are its own and only mark the
examples as out-of-distribution — evaluation.py scores OOD sets against the in-distribution `test`
set (AUROC, AUPR, FPR at 95 % TPR from the ensemble's max probability and predictive entropy) and
never computes accuracy on them.
"""

from __future__ import annotations

from hyper_ensembles.data import mnist, synthetic_ood, tfds_source
from hyper_ensembles.data.dataset import ArraySplit

PREFIX = 'ood_'
SVHN = 'svhn_cropped'
# The OOD sets suggested for each dataset (unknown names are tried as TFDS datasets).
CHOICES = {
    'digits': synthetic_ood.NAMES,
    'fashion_mnist': ('mnist', 'digits28', *synthetic_ood.NAMES),
    'cifar10': (SVHN, *synthetic_ood.NAMES),
    'cifar100': (SVHN, *synthetic_ood.NAMES),
}


def set_name(tfds_name: str) -> str:
  """Evaluation-set name of an OOD dataset: `ood_<name>` ('/' and ':' replaced by '_')."""
  return PREFIX + tfds_name.replace('/', '_').replace(':', '_')


def is_ood_set(name: str) -> bool:
  """Whether an evaluation-set name is an OOD set (scored against `test`, no accuracy)."""
  return name.startswith(PREFIX)


def _built_in_shape(name: str, image_shape) -> tuple[int, ...] | None:
  """The image shape of a built-in OOD set (synthetic ones take any); None for TFDS names."""
  if name in synthetic_ood.GENERATORS:
    return tuple(image_shape)
  if name in ('mnist', 'digits28'):
    return mnist.IMAGE_SHAPE
  return None


def _choices_text(dataset: str, image_shape) -> str:
  names = CHOICES.get(dataset, synthetic_ood.NAMES)
  return (f'OOD sets for {dataset or "this dataset"}: {", ".join(names)}, or a TFDS dataset with '
          f'{tuple(image_shape)} images')


def load_one(name: str, data_config, image_shape: tuple[int, int, int], num_synthetic: int,
             dataset: str = '') -> ArraySplit:
  """The images of OOD set `name` (the module docstring's table), not yet shape-checked."""
  if name in synthetic_ood.GENERATORS:
    return synthetic_ood.generate(name, num_synthetic, image_shape,
                                  data_config.get('generated_eval_seed', 0) or 0)
  if name == 'mnist':
    return mnist.load_mnist_test(data_config.get('mnist_dir'), data_config.get('tfds_data_dir'))
  if name == 'digits28':
    return mnist.load_digits28()
  import tensorflow_datasets as tfds  # Lazy: only TFDS-backed sets pay for TensorFlow.
  try:
    return tfds_source.load_tfds_eval_split(name, 'test', data_config.get('tfds_data_dir'))
  except tfds.core.DatasetNotFoundError as e:
    raise ValueError(f'Unknown OOD dataset {name!r} (not built in, not in TFDS). '
                     + _choices_text(dataset, image_shape)) from e


def load_ood(data_config, image_shape: tuple[int, int, int], dataset: str = '',
             num_synthetic: int = 10_000) -> dict[str, ArraySplit]:
  """`{ood_<name>: split}` for every name in `config.data.ood_datasets`.

  Args:
    data_config: the data config (`ood_datasets`, `mnist_dir`, `tfds_data_dir`,
      `generated_eval_seed`).
    image_shape: the training data's (H, W, C); every set must match it.
    dataset: the training dataset's name, for the choices an error lists.
    num_synthetic: images per synthetic set (the registry passes the test set's size).
  """
  names = data_config.get('ood_datasets', ()) or ()
  # `--config.data.ood_datasets=a,b` arrives as the 1-tuple ('a,b',): commas separate names too.
  names = [n.strip() for item in ((names,) if isinstance(names, str) else names)
           for n in item.split(',') if n.strip()]

  def check_shape(name: str, shape) -> None:
    if shape is not None and tuple(shape) != tuple(image_shape):
      raise ValueError(
          f'OOD dataset {name!r} has {tuple(shape)} images; the training data has '
          f'{tuple(image_shape)}. ' + _choices_text(dataset, image_shape))

  for name in names:  # Built-in mismatches fail before anything is loaded (MNIST may download).
    check_shape(name, _built_in_shape(name, image_shape))
  out = {}
  for name in names:
    split = load_one(name, data_config, image_shape, num_synthetic, dataset)
    check_shape(name, split.images.shape[1:])
    out[set_name(name)] = split
  return out
