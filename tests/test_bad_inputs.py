"""A catalogue of bad inputs: each ends in one `error (...)` line and leaves nothing that blocks the
corrected command.

Most entries run in-process through the functions the entry points use — `cli.resolve_flags`
(what `main` and the scripts parse the command line with, `--config=file:args` and
`--config.<key>=` included) and `config_check.check` (what `main`, `train.train_and_evaluate` and
the hyper-deep planner run on the resolved config) — and are reported by `cli.error_line`, the
line the commands print. A smaller set runs each entry point as a real subprocess and checks its
exit status, its stderr and the workdir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from hyper_ensembles import evaluate, train
from hyper_ensembles.runs import cli
from hyper_ensembles.runs import workdir as workdir_lib
from hyper_ensembles.training import config_check
from tests.conftest import REPO_ROOT, smoke_config, subprocess_env

SMOKE = 'configs/default.py:method=single,smoke'
HD_SMOKE = 'configs/default.py:method=hyper_deep,smoke'

# (config flag value, [--config.<key>=<value> overrides], a fragment the error line must contain)
CONFIG_CATALOGUE = [
    ('configs/default.py:method=bogus', [], "'bogus'"),
    ('configs/default.py:arch=bogus', [], "'bogus'"),
    ('configs/default.py:dataset=bogus', [], "'bogus'"),
    ('configs/default.py:colour=red', [], "'colour=red'"),
    ('configs/default.py:smoke,method', [], "'method'"),
    ('configs/no_such_file.py', [], 'no_such_file.py'),
    ('configs/saved.py:/no/such/config.json', [], '/no/such/config.json'),
    ('configs/resnet20.py:method=bogus', [], "'bogus'"),
    ('configs/resnet20.py:dataset=mnist', [], "'mnist'"),
    ('configs/wrn28_10.py:arch=mlp', [], "'arch=mlp'"),
    (SMOKE, ['num_epoch=3'], 'num_epochs'),
    (SMOKE, ['optimizer.learnig_rate=0.1'], 'learning_rate'),
    (SMOKE, ['hparams.dropuot=0.1'], 'dropout'),
    (SMOKE, ['num_epochs=abc'], 'abc'),
    (SMOKE, ['num_train_steps=-1', 'num_epochs=0'], 'num_epochs'),
    (SMOKE, ['num_train_steps=-1', 'num_epochs=-3'], 'num_epochs=-3'),
    (SMOKE, ['hparams.dropout=1.5'], 'hparams.dropout=1.5'),
    (SMOKE, ['hparams.dropout=-0.1'], 'hparams.dropout=-0.1'),
    (SMOKE, ['hparams.dropout=1.0'], '[0, 1)'),
    (SMOKE, ['hparams.label_smoothing=1.0'], 'label_smoothing'),
    (SMOKE, ['hparams.l2=-1.0'], 'hparams.l2'),
    (SMOKE, ['hyper.space.dropout=(0.1, 5.0)'], 'hyper.space.dropout'),
    (SMOKE, ['hyper.space.dropout=(0.5, 0.1)'], 'min < max'),
    (SMOKE, ['hyper.space.l2=(0.0, 10.0)'], 'hyper.space.l2'),
    (SMOKE, ['num_members=0'], 'num_members=0'),
    (SMOKE, ['eval_batch_size=0'], 'eval_batch_size=0'),
    (SMOKE, ['batch_size=0'], 'batch_size=0'),
    (SMOKE, ['checkpoint_every_steps=0'], 'checkpoint_every_steps=0'),
    (SMOKE, ['log_every_steps=0'], 'log_every_steps=0'),
    (SMOKE, ['eval_every_steps=-1'], 'eval_every_steps=-1'),
    (SMOKE, ['max_checkpoints_to_keep=0'], 'max_checkpoints_to_keep=0'),
    (SMOKE, ['max_eval_examples=0'], 'max_eval_examples=0'),
    (SMOKE, ['optimizer.learning_rate=0.0'], 'learning_rate=0.0'),
    (SMOKE, ['optimizer.name=adamw'], "'sgd'"),
    (SMOKE, ['optimizer.momentum=1.5'], 'momentum'),
    (SMOKE, ['optimizer.decay_fractions=(0.5, 1.5)'], 'decay_fractions'),
    (SMOKE, ['evaluation.temperature_scaling=bogus'], "'per_member'"),
    (SMOKE, ['hyper.entropy=bogus'], "'log_lambda'"),
    (SMOKE, ['hyper.init=bogus'], "'whole_range'"),
    (SMOKE, ['hyper.tune_every_steps=0'], 'tune_every_steps'),
    (SMOKE, ['data.validation_fraction=0.0'], 'validation_fraction'),
    (SMOKE, ['data.corruption_severities=(0, 6)'], 'corruption_severities'),
    (SMOKE, ['model.fast_weight_init=bogus'], 'random_sign'),
    (SMOKE, ['member_hparams.dropout=(0.1,)'], 'member_hparams.dropout'),
    (SMOKE, ['member_hparams.dropout=(0.1, 0.2, 1.2)'], 'member_hparams.dropout'),
    (HD_SMOKE, ['hyper_deep.pool_size=0'], 'hyper_deep.pool_size=0'),
    (HD_SMOKE, ['hyper_deep.chunk_size=0'], 'hyper_deep.chunk_size=0'),
    (HD_SMOKE, ['hyper_deep.search_space.dropout=(0.1, 2.0)'], 'search_space.dropout'),
    ('configs/resnet20.py:smoke', ['model.resnet20.blocks_per_stage=0'], 'blocks_per_stage'),
    ('configs/wrn28_10.py:smoke', ['model.wrn.depth=27'], '6n + 4'),
    ('configs/wrn28_10.py:smoke', ['model.wrn.width=0'], 'model.wrn.width=0'),
]


def _resolve(config_arg: str, overrides: list[str]):
  """What `main` does with its command line, on a fresh set of flags: parse, then check."""
  argv = ['main', f'--config={config_arg}', *(f'--config.{o}' for o in overrides), '--workdir=x']
  flag_values = flags.FlagValues()
  # sys_argv: ml_collections reads the --config.<key> overrides from it (default: sys.argv).
  config_flags.DEFINE_config_file('config', None, '', lock_config=True, flag_values=flag_values,
                                  sys_argv=argv)
  flags.DEFINE_string('workdir', None, '', flag_values=flag_values)
  cli.resolve_flags(argv, flag_values)
  config = flag_values['config'].value
  config_check.check(config)
  return config


def _assert_one_error_line(e: BaseException, fragment: str) -> None:
  assert isinstance(e, (*cli.USER_ERRORS, flags.Error)), (type(e), e)
  line = cli.error_line(e)
  assert line.startswith('error (') and '\n' not in line, line
  assert 'Traceback' not in line and 'File "' not in line, line
  assert fragment in line, (fragment, line)


@pytest.mark.parametrize('config_arg,overrides,fragment', CONFIG_CATALOGUE,
                         ids=[f'{c.split("/")[-1]}|{",".join(o)}' for c, o, _ in CONFIG_CATALOGUE])
def test_bad_config_is_refused_in_one_line(config_arg, overrides, fragment):
  with pytest.raises(Exception) as excinfo:
    _resolve(config_arg, overrides)
  _assert_one_error_line(excinfo.value, fragment)


def test_the_catalogue_is_large_enough():
  assert len(CONFIG_CATALOGUE) + len(EVALUATE_CATALOGUE) + len(SUBPROCESS_CATALOGUE) >= 40


def test_every_shipped_config_passes():
  """The rules must not refuse what the repository ships (so the catalogue's refusals mean it)."""
  for config_arg in ('configs/default.py:method=hyper_batch,arch=lenet',
                     'configs/default.py:method=hyper_deep,dataset=fashion_mnist',
                     'configs/resnet20.py:method=hyper_batch',
                     'configs/resnet20.py:method=hyper_deep',
                     'configs/wrn28_10.py:method=batch,dataset=cifar100', SMOKE):
    _resolve(config_arg, [])


@pytest.mark.parametrize('override', ['hparams.dropout=1.5', 'eval_batch_size=0',
                                      'num_epochs=-1.0'])
def test_rejected_run_leaves_nothing_and_corrected_run_proceeds(tmp_path, override):
  """train_and_evaluate refuses before writing; the corrected config then uses the same workdir."""
  key, value = override.split('=')
  config = smoke_config('single', 'mlp', **{key.replace('.', '__'): float(value)
                                            if '.' in value else int(value)})
  if key == 'num_epochs':
    config.num_train_steps = -1
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError) as excinfo:
    train.train_and_evaluate(config, str(workdir))
  _assert_one_error_line(excinfo.value, key)
  assert not workdir.exists()
  assert train.train_and_evaluate(smoke_config('single', 'mlp'), str(workdir),
                                  stop_after_steps=0) == {}
  assert (workdir / 'config.json').exists()


def test_workdir_that_is_a_file(tmp_path):
  target = tmp_path / 'a_file'
  target.write_text('mine')
  for workdir in (target, target / 'run'):
    with pytest.raises(workdir_lib.WorkdirError) as excinfo:
      train.train_and_evaluate(smoke_config('single', 'mlp'), str(workdir))
    _assert_one_error_line(excinfo.value, 'is a file')
  assert target.read_text() == 'mine'


def test_results_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    workdir_lib.write_json(str(tmp_path / 'a.json'), {'x': 1})
    import numpy as np
    workdir_lib.write_predictions(str(tmp_path), 'test', np.zeros((1, 2, 3)), np.zeros(2))
  finally:
    os.umask(old)
  for path in (tmp_path / 'a.json', tmp_path / 'predictions' / 'test.npz'):
    assert os.stat(path).st_mode & 0o777 == 0o644, oct(os.stat(path).st_mode)


# --------------------------------------------------------------------------------------------------
# evaluate: bad workdirs and flags, and unfinished runs.
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def unfinished(tmp_path_factory):
  """A run stopped at step 6 of 12: config.json and a checkpoint, no final metrics."""
  workdir = str(tmp_path_factory.mktemp('unfinished'))
  train.train_and_evaluate(smoke_config('single', 'mlp'), workdir, stop_after_steps=6)
  return workdir


# (what to build, evaluate's arguments, fragment)
EVALUATE_CATALOGUE = [
    ('missing', {}, 'does not exist'),
    ('empty', {}, 'config.json'),
    ('unfinished', {}, 'unfinished run'),
    ('unfinished', {'sets': ['test']}, 'unfinished run'),
    ('unfinished', {'temperature_scaling': 'bogus'}, 'per_member'),
    ('override', {'override': 'corruptions=all'}, 'data.<field>'),
    ('override', {'override': 'data.split_seed=3'}, 'split_seed'),
]


@pytest.mark.parametrize('kind,kwargs,fragment', EVALUATE_CATALOGUE,
                         ids=[f'{k}-{i}' for i, (k, _, _) in enumerate(EVALUATE_CATALOGUE)])
def test_evaluate_refuses_in_one_line(tmp_path, unfinished, kind, kwargs, fragment):
  workdir = str(tmp_path / 'run')
  if kind == 'empty':
    os.makedirs(workdir)
  elif kind == 'unfinished':
    shutil.copytree(unfinished, workdir)
  before = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None
  with pytest.raises(Exception) as excinfo:
    if kind == 'override':
      evaluate.parse_override(kwargs['override'])
    else:
      evaluate.evaluate_workdir(workdir, **kwargs)
  _assert_one_error_line(excinfo.value, fragment)
  after = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else None
  assert before == after  # in particular no metrics.json that would make the run look finished
  assert not workdir_lib.is_finished(workdir)


# --------------------------------------------------------------------------------------------------
# Real command lines: each entry point once or twice (slow: a JAX import per process).
# --------------------------------------------------------------------------------------------------

# (argv after the interpreter, fragment); WORKDIR is replaced by a fresh path.
SUBPROCESS_CATALOGUE = [
    (['-m', 'hyper_ensembles.main', f'--config={SMOKE}', '--config.num_epoch=3',
      '--workdir=WORKDIR'], 'num_epochs'),
    (['-m', 'hyper_ensembles.main', f'--config={SMOKE}', '--config.hparams.dropout=1.5',
      '--workdir=WORKDIR'], 'hparams.dropout=1.5'),
    (['-m', 'hyper_ensembles.main', '--config=configs/nope.py', '--workdir=WORKDIR'], 'nope.py'),
    (['-m', 'hyper_ensembles.main', f'--config={SMOKE}', '--workdir=FILE'], 'is a file'),
    (['-m', 'hyper_ensembles.evaluate', '--workdir=WORKDIR'], 'does not exist'),
    (['-m', 'hyper_ensembles.evaluate', '--workdir=UNFINISHED'], 'unfinished run'),
    (['scripts/sweep.py', f'--config={HD_SMOKE}', '--config.hyper_deep.pool_size=0',
      '--workdir=WORKDIR', '--print'], 'pool_size=0'),
    (['scripts/sweep.py', f'--config={HD_SMOKE}', '--workdir=WORKDIR'], '--print or --run'),
    (['scripts/hyper_deep_ensemble.py', f'--config={HD_SMOKE}', '--config.hyper_deep.pool_size=0',
      '--workdir=WORKDIR'], 'pool_size=0'),
    (['scripts/hyper_deep_ensemble.py', '--config=configs/default.py:method=hyper_deep,arch=x',
      '--workdir=WORKDIR'], "'x'"),
    (['scripts/demo.py', '--pool_size=abc', '--workdir=WORKDIR'], 'abc'),
]


@pytest.mark.slow
def test_command_lines_report_one_error_line(tmp_path, unfinished):
  a_file = tmp_path / 'a_file'
  a_file.write_text('mine')
  failures = []
  for i, (args, fragment) in enumerate(SUBPROCESS_CATALOGUE):
    workdir = tmp_path / f'run{i}'
    unfinished_copy = tmp_path / f'unfinished{i}'
    shutil.copytree(unfinished, unfinished_copy)
    argv = [a.replace('WORKDIR', str(workdir)).replace('UNFINISHED', str(unfinished_copy))
            .replace('FILE', str(a_file)) for a in args]
    proc = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('error (')]
    ok = (proc.returncode != 0 and 'Traceback' not in proc.stderr and len(errors) == 1
          and lines[-1] == errors[0] and fragment in errors[0] and not workdir.exists()
          and not workdir_lib.is_finished(str(unfinished_copy)) and a_file.read_text() == 'mine')
    if not ok:
      failures.append(f'{argv}: status {proc.returncode}, stderr ends {lines[-3:]}')
  assert not failures, '\n'.join(failures)
