"""Dotted config overrides (`'optimizer.learning_rate=0.1'`) as scripts and pipelines pass them.

One place for how a `key=value` text becomes a typed value (a Python literal when it parses, a
comma list as a tuple, a string otherwise) and for setting `{'a.b': value}` on a copy of a config,
so the hyper-deep pipeline's run overrides, `evaluate --override` and the comparison scripts'
`--set` all read the same syntax.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections


def parse_value(text: str) -> Any:
  """'0.1' → 0.1, '(1, 2)' → (1, 2), 'a,b' → ('a', 'b'), 'adam' → 'adam'."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text.split(',') if ',' in text else text
  return tuple(value) if isinstance(value, list) else value


def parse_override(text: str, flag: str = '--set') -> tuple[str, Any]:
  """'a.b=value' → ('a.b', parsed value); `flag` names the option in the error."""
  key, sep, value = text.partition('=')
  if not sep or not key.strip():
    raise ValueError(f'{flag} expects <dotted.key>=<value>, got {text!r}')
  return key.strip(), parse_value(value.strip())


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with flat `{'a.b': value}` overrides set (lists become tuples).

  Unknown keys fail as the locked config makes them fail, naming the key.
  """
  out = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = out
    for depth, part in enumerate([*parents, leaf]):
      if not hasattr(node, 'keys') or part not in node:
        where = '.'.join(parents[:depth]) or 'the config'
        valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none: a value)'
        raise ValueError(f'Unknown config key {key!r} in an override; the keys of {where} are: '
                         f'{valid}')
      if depth < len(parents):
        node = node[part]
    # JSON has no tuples; every sequence field of the config is a tuple.
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return out
