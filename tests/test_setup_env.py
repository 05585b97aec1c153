"""tools/setup_env.sh: stdout is exactly the python path, and a run on an
up-to-date environment is a no-op.

The test never installs or re-points anything: the shared environment may
serve other checkouts. It asks the script with ``--check`` (changes
nothing); ``make test`` runs the real set-up for this checkout just before
pytest, so in CI the environment is up to date and the test runs in full.
"""
import os
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _setup_env(*args):
    return subprocess.run(['bash', 'tools/setup_env.sh', *args],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=60)


def test_up_to_date_run_prints_only_the_python_path_and_changes_nothing():
    check = _setup_env('--check')
    if check.returncode == 3:
        pytest.skip('the shared environment is set up for another checkout; '
                    'not re-pointing it (make test sets it up first)')
    assert check.returncode == 0, check.stderr[-2000:]
    venv = osp.dirname(osp.dirname(check.stdout.strip()))
    stamp = osp.join(venv, '.mmslak-stamp')
    before = (open(stamp).read(), os.stat(stamp).st_mtime_ns)
    run = _setup_env()
    assert run.returncode == 0, run.stderr[-2000:]
    for proc in (check, run):
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        assert osp.isfile(lines[0]) and os.access(lines[0], os.X_OK)
    assert run.stdout == check.stdout
    assert 'environment up to date' in run.stderr
    assert 'installing' not in run.stderr
    assert (open(stamp).read(), os.stat(stamp).st_mtime_ns) == before


def test_check_reports_a_stale_environment_without_touching_it(tmp_path):
    venv = tmp_path / 'venv'
    proc = subprocess.run(['bash', 'tools/setup_env.sh', '--check'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=60,
                          env=dict(os.environ, MMSLAK_VENV=str(venv)))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ''
    assert 'not set up' in proc.stderr
    assert not venv.exists()
