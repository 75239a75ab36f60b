"""The package's layers (docs/design.md §10): no import goes up a layer, and none forms a cycle.

Imports are read from the source (module level and inside functions alike, `TYPE_CHECKING`
blocks included), so a lazy import cannot hide a cycle. The checks are tried on small synthetic
packages first, so a checker that could never fail would fail here.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = 'hyper_ensembles'
# Bottom to top. A module may import modules of its own layer or of layers below it. The root
# entry points and the orchestration packages form the top: `launching.local` calls the root
# `train` loop, `hyper_deep` launches runs, `main` starts either.
LAYERS = (
    ('maths', 'runs'),
    ('data', 'models'),
    ('methods',),
    ('training',),
    ('evaluation',),
    ('reporting', '<root>', 'launching', 'hyper_deep', 'reproduction'),
)


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = path.relative_to(root).with_suffix('').parts
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _imports(path: pathlib.Path, name: str, is_package: bool) -> set[str]:
  """Every module of the package that `path` imports (absolute or relative, anywhere)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = name.split('.')
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        module = '.'.join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ''
      found.add(module)
      # `from pkg import mod` imports the module pkg.mod.
      found |= {f'{module}.{alias.name}' for alias in node.names}
  return found


def import_graph(root: pathlib.Path, package: str = PACKAGE) -> dict[str, set[str]]:
  files = {_module_name(p, root): p for p in sorted((root / package).rglob('*.py'))}
  graph = {}
  for name, path in files.items():
    targets = _imports(path, name, path.name == '__init__.py')
    # A module's own ancestor packages are initialised before it in any case: not an edge.
    ancestors = {name.rsplit('.', k)[0] for k in range(1, name.count('.') + 1)}
    graph[name] = {t for t in targets if t in files and t != name and t not in ancestors}
  return graph


def layer_of(module: str, package: str = PACKAGE) -> int:
  parts = module.split('.')
  sub = parts[1] if len(parts) > 2 else '<root>'
  if len(parts) == 2 and parts[1] in {s for layer in LAYERS for s in layer}:
    sub = parts[1]  # the subpackage's own __init__
  if len(parts) == 1:
    sub = '<root>'
  for i, layer in enumerate(LAYERS):
    if sub in layer:
      return i
  raise AssertionError(f'{module}: in no layer of {LAYERS}; add its subpackage to LAYERS')


def upward_imports(graph: dict[str, set[str]], package: str = PACKAGE) -> list[str]:
  return sorted(f'{a} -> {b}' for a, targets in graph.items() for b in targets
                if layer_of(b, package) > layer_of(a, package))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
  for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
  _write(tmp_path, {
      'hyper_ensembles/__init__.py': '',
      'hyper_ensembles/maths/__init__.py': '',
      'hyper_ensembles/maths/a.py': 'from hyper_ensembles.maths import b\n',
      'hyper_ensembles/maths/b.py': 'def f():\n  from . import a\n',
  })
  assert cycles(import_graph(tmp_path)) == [['hyper_ensembles.maths.a', 'hyper_ensembles.maths.b']]


def test_checker_finds_an_upward_import(tmp_path):
  _write(tmp_path, {
      'hyper_ensembles/__init__.py': '',
      'hyper_ensembles/train.py': '',
      'hyper_ensembles/maths/__init__.py': '',
      'hyper_ensembles/maths/a.py': 'import hyper_ensembles.train\n',
      'hyper_ensembles/methods/__init__.py': '',
      'hyper_ensembles/methods/m.py': 'from hyper_ensembles.maths import a\n',
  })
  graph = import_graph(tmp_path)
  assert upward_imports(graph) == ['hyper_ensembles.maths.a -> hyper_ensembles.train']
  assert not cycles(graph)


@pytest.fixture(scope='module')
def graph():
  return import_graph(pathlib.Path(REPO_ROOT))


def test_no_import_cycles(graph):
  assert cycles(graph) == []


def test_no_import_goes_up_a_layer(graph):
  assert upward_imports(graph) == []


def test_the_root_holds_only_entry_points(graph):
  root_modules = sorted(m for m in graph if m.count('.') == 1
                        and not (pathlib.Path(REPO_ROOT) / m.replace('.', '/')).is_dir())
  assert root_modules == ['hyper_ensembles.evaluate', 'hyper_ensembles.main',
                          'hyper_ensembles.train']
