"""scripts/gpu_benchmark.py at smoke size on CPU: it runs, and its report is consistent.

The full-size run is for a GPU (README, Speed); here the oracles are the script's own definitions:
the cost ratio is the quotient of the two step rates, the epoch rate steps × batch / seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, subprocess_env


@pytest.mark.slow
def test_gpu_benchmark_smoke(tmp_path):
  out = tmp_path / 'gpu.json'
  cmd = [sys.executable, os.path.join(REPO_ROOT, 'scripts', 'gpu_benchmark.py'), '--smoke',
         f'--out={out}']
  run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600,
                       cwd=REPO_ROOT)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(out.read_text())
  wrn = result['wrn28_10']
  assert result['smoke'] and wrn['members'] == 4 and wrn['unique_batch'] == 8
  assert wrn['batch_steps_per_second'] > 0 and wrn['hyper_batch_steps_per_second'] > 0
  assert wrn['hyper_over_batch_step_cost'] == pytest.approx(
      wrn['batch_steps_per_second'] / wrn['hyper_batch_steps_per_second'])
  # The hyper-batch network has a second kernel Δ per layer: about twice the parameters.
  assert 1.8 < wrn['num_params']['hyper_batch'] / wrn['num_params']['batch'] < 2.2
  assert wrn['memory']['batch']['compiled_step']['argument_size_in_bytes'] > 0
  epoch = result['resnet20_epoch']
  assert epoch['images_per_second'] == pytest.approx(
      epoch['steps'] * epoch['batch_size'] / epoch['seconds'])
  assert 'hyper-batch / batch step cost' in run.stdout
