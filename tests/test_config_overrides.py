"""Dotted config overrides: the one parser behind `--set`, `evaluate --override` and sweeps."""

from __future__ import annotations

import pytest

from configs import default
from hyper_ensembles.runs.overrides import apply_overrides, parse_override, parse_value


@pytest.mark.parametrize('text, value', [
    ('0.1', 0.1), ('3', 3), ('True', True), ('(1, 2)', (1, 2)), ('[0.5, 1.0]', (0.5, 1.0)),
    ('official', 'official'), ('digits28,uniform_noise', ('digits28', 'uniform_noise')),
    ("'1e-3'", '1e-3')])
def test_parse_value_types(text, value):
  assert parse_value(text) == value
  assert type(parse_value(text)) is type(value)


def test_parse_override_splits_on_the_first_equals_and_names_bad_input():
  assert parse_override('data.ood_datasets=a,b') == ('data.ood_datasets', ('a', 'b'))
  assert parse_override(' optimizer.name = adam') == ('optimizer.name', 'adam')
  with pytest.raises(ValueError, match=r"--set expects <dotted.key>=<value>, got 'num_epochs'"):
    parse_override('num_epochs')
  with pytest.raises(ValueError, match='--override'):
    parse_override('=3', flag='--override')


def test_apply_overrides_copies_and_rejects_unknown_keys():
  config = default.get_config('method=batch,smoke')
  out = apply_overrides(config, {'num_epochs': 2.0, 'data.ood_datasets': ['uniform_noise'],
                                 'hyper.init': 'whole_range'})
  assert (out.num_epochs, out.data.ood_datasets, out.hyper.init) == (
      2.0, ('uniform_noise',), 'whole_range')
  assert config.data.ood_datasets == () and config.hyper.init == 'log_centred'
  with pytest.raises(ValueError, match='num_epoch'):
    apply_overrides(config, {'num_epoch': 2.0})
