"""Child processes that import the checkout under test, with a proof.

Test modules import it as ``from child_process import run_in_checkout``
(``tests/`` is on ``sys.path`` under pytest); ``tests/conftest.py`` also
serves it as the ``checkout_run`` fixture.
"""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs a script as ``python SCRIPT ARGS`` would, after reporting where
# mmslak was imported from (the script's own ``import mmslak`` then reuses
# the module).
_CHILD_PRELUDE = (
    'import runpy, sys, mmslak; '
    "print('MMSLAK_IMPORTED_FROM=' + mmslak.__file__, flush=True); "
    'sys.argv = sys.argv[1:]; '
    "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_in_checkout(script, *args, env=None, cwd=REPO, **kwargs):
    """``python script *args`` in a child process that imports THIS
    checkout (PYTHONPATH), with a proof: the child reports
    ``mmslak.__file__`` and this asserts it lies inside the checkout.
    Returns the CompletedProcess (text, stdout/stderr captured)."""
    proc = subprocess.run(
        checkout_command(script, *args),
        cwd=cwd,
        env=checkout_env(env),
        capture_output=True,
        text=True,
        **kwargs)
    assert_imported_this_checkout(proc.stdout, proc.stderr)
    return proc


def checkout_command(script, *args) -> list:
    """``python script *args``, first reporting ``mmslak.__file__`` (for
    :func:`assert_imported_this_checkout`; run it with
    :func:`checkout_env`)."""
    return [sys.executable, '-c', _CHILD_PRELUDE, str(script), *map(str, args)]


def checkout_env(env=None) -> dict:
    """``env`` (default: this process's) with PYTHONPATH set to this
    checkout, for a child that must import it."""
    return dict(os.environ if env is None else env, PYTHONPATH=REPO)


def assert_imported_this_checkout(stdout, stderr=''):
    found = re.search(r'^MMSLAK_IMPORTED_FROM=(.+)$', stdout, re.M)
    assert found, 'the child did not import mmslak:\n' + (
        stdout[-2000:] + stderr[-2000:])
    path = os.path.realpath(found.group(1))
    assert os.path.commonpath([path, os.path.realpath(REPO)]) == \
        os.path.realpath(REPO), f'the child imported mmslak from {path}'
