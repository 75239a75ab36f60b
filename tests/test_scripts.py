"""scripts/ are command-line wrappers over the installed package: none edits `sys.path`, and no
test loads one by its file path (tests import the package module; a script runs as a subprocess).
"""

from __future__ import annotations

import ast
import glob
import os

import pytest

from tests.conftest import REPO_ROOT

SCRIPTS = sorted(glob.glob(os.path.join(REPO_ROOT, 'scripts', '*.py')))
TESTS = sorted(glob.glob(os.path.join(REPO_ROOT, 'tests', '*.py')))
# Ways to execute a .py file as a module without importing it by name.
FILE_LOADERS = ('spec_from_file_location', 'SourceFileLoader', 'run_path', 'load_source',
                'exec_module')


def sys_path_uses(source: str) -> list[int]:
  """Lines of `source` that touch `sys.path` (`sys.path.insert(...)`, `from sys import path`)."""
  attribute = lambda node: (isinstance(node, ast.Attribute) and node.attr == 'path'
                            and isinstance(node.value, ast.Name) and node.value.id == 'sys')
  imported = lambda node: (isinstance(node, ast.ImportFrom) and node.module == 'sys'
                           and any(a.name == 'path' for a in node.names))
  return [node.lineno for node in ast.walk(ast.parse(source)) if attribute(node) or imported(node)]


def script_loads(source: str) -> list[int]:
  """Lines of `source` that load a file of `scripts/` by path, or import `scripts` by name."""
  tree = ast.parse(source)
  # A name bound to a path that mentions scripts/ (e.g. `path = os.path.join(REPO, 'scripts', …)`)
  # counts as the path itself when it reaches a loader.
  mentions = lambda node: any(isinstance(n, ast.Constant) and isinstance(n.value, str)
                              and 'scripts' in n.value for n in ast.walk(node))
  script_names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  and mentions(node.value) for t in node.targets if isinstance(t, ast.Name)}
  lines = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      func = node.func
      name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
      if name in FILE_LOADERS and (mentions(node) or any(
          isinstance(n, ast.Name) and n.id in script_names for n in ast.walk(node))):
        lines.append(node.lineno)
    elif isinstance(node, ast.Import | ast.ImportFrom) and 'scripts' in {
        (name or '').split('.')[0] for name in
        ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])}:
      lines.append(node.lineno)
  return sorted(lines)


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


def test_the_checks_find_what_they_look_for():
  assert sys_path_uses('import sys\nsys.path.insert(0, "..")\n') == [2]
  assert sys_path_uses('from sys import path\npath.append("x")\n') == [1]
  assert sys_path_uses('import os\nos.path.join("a")\n') == []
  loaded = ('import importlib.util, os\n'
            'p = os.path.join(ROOT, "scripts", "demo.py")\n'
            'spec = importlib.util.spec_from_file_location("demo", p)\n'
            'runpy.run_path("scripts/sweep.py")\n'
            'from scripts import make_tables\n')
  assert script_loads(loaded) == [3, 4, 5]
  assert script_loads('spec = importlib.util.spec_from_file_location("c", "configs/x.py")\n') == []


@pytest.mark.parametrize('path', SCRIPTS, ids=os.path.basename)
def test_script_does_not_edit_sys_path(path):
  assert sys_path_uses(_read(path)) == [], f'{path} edits sys.path; import the installed package'


@pytest.mark.parametrize('path', TESTS, ids=os.path.basename)
def test_no_test_loads_a_script_by_path(path):
  assert script_loads(_read(path)) == [], (
      f'{path} loads a file of scripts/ by path; import its package module (or run the script '
      'as a subprocess)')
