"""The README's main job (`make demo` = scripts/demo.py) end to end, at smoke size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, subprocess_env


@pytest.mark.slow
def test_demo_smoke_writes_a_mean_and_se_table_over_seeds(tmp_path):
  workdir = tmp_path / 'demo'
  cmd = [sys.executable, os.path.join(REPO_ROOT, 'scripts', 'demo.py'), f'--workdir={workdir}',
         '--smoke', '--methods=single,batch', '--seeds=0,1']
  out = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(workdir / 'results.json') as f:
    results = json.load(f)
  assert sorted(results) == ['batch', 'single'] and sorted(results['batch']) == ['0', '1']
  table = (workdir / 'results.md').read_text()
  # The table's mean ± SE equals numpy's over the per-seed metrics.json files (the oracle).
  for method in ('single', 'batch'):
    nll = []
    for seed in (0, 1):
      with open(workdir / method / f'seed_{seed}' / 'metrics.json') as f:
        nll.append(json.load(f)['test']['nll'])
    assert nll[0] != nll[1]  # the seeds really differ
    se = np.std(nll, ddof=1) / np.sqrt(2)
    assert f'{np.mean(nll):.4f} ± {se:.4f}' in table
  # A second run finds every seed done and trains nothing.
  again = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert again.returncode == 0 and (workdir / 'results.md').read_text() == table
