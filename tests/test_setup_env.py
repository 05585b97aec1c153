import os
import os.path as osp
import subprocess

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _setup_env():
    proc = subprocess.run(['bash', 'tools/setup_env.sh'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_setup_env_prints_only_the_python_path():
    """`PY=$(bash tools/setup_env.sh)` must capture exactly one path (all
    progress goes to stderr); right after a run, a second one is a no-op."""
    first = _setup_env()
    second = _setup_env()
    for proc in (first, second):
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        assert osp.isfile(lines[0]) and os.access(lines[0], os.X_OK)
    assert second.stdout == first.stdout
    assert 'environment up to date' in second.stderr
