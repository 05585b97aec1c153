import os
import os.path as osp
import subprocess

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_setup_env_prints_only_the_python_path():
    """`PY=$(bash tools/setup_env.sh)` must capture exactly one path (all
    progress goes to stderr); a second run is a no-op."""
    proc = subprocess.run(['bash', 'tools/setup_env.sh'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    assert osp.isfile(lines[0]) and os.access(lines[0], os.X_OK)
    assert 'environment up to date' in proc.stderr
