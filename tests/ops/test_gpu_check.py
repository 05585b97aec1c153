"""tools/misc/gpu_check.sh without a GPU: says so and exits 0, quickly."""
import os
import subprocess
import sys
import time

import pytest
import torch

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible')
def test_gpu_check_without_gpu_says_so_and_exits_0(tmp_path):
    env = dict(os.environ, PY=sys.executable, GPU_CHECK_DIR=str(tmp_path))
    start = time.monotonic()
    proc = subprocess.run(['bash', 'tools/misc/gpu_check.sh'],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'no usable CUDA GPU' in proc.stdout
    assert 'verdict' not in proc.stdout  # no step ran
    assert not list(tmp_path.iterdir())
    assert time.monotonic() - start < 60
