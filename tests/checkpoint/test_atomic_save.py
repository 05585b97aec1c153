"""A checkpoint write that dies midway leaves the previous file usable."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from child_process import assert_imported_this_checkout, checkout_env
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.runner.checkpoint import save_checkpoint

import mmslak  # noqa: F401
from mmslak.checkpoint import (AtomicLocalBackend, CorruptCheckpointError,
                               load_checkpoint_file)

ATOMIC = dict(backend='atomic_local')

# Saves version 1, then starts saving version 2 through mmengine's
# save_checkpoint with the 'atomic_local' backend (what AtomicCheckpointHook
# selects) and stalls halfway through writing the bytes.
CHILD = textwrap.dedent("""
    import os, sys, time
    import torch
    import mmslak
    from mmengine.runner.checkpoint import save_checkpoint
    print('MMSLAK_IMPORTED_FROM=' + mmslak.__file__, flush=True)
    path, marker = sys.argv[1], sys.argv[2]
    ATOMIC = dict(backend='atomic_local')
    save_checkpoint(dict(meta=dict(version=1),
                         state_dict=dict(w=torch.ones(200000))), path,
                    backend_args=ATOMIC)
    real_fdopen = os.fdopen

    class Stalling:
        def __init__(self, f):
            self.f = f
        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            open(marker, 'w').close()
            time.sleep(120)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.f.close()
        def __getattr__(self, name):
            return getattr(self.f, name)

    os.fdopen = lambda *a, **k: Stalling(real_fdopen(*a, **k))
    save_checkpoint(dict(meta=dict(version=2),
                         state_dict=dict(w=torch.zeros(200000))), path,
                    backend_args=ATOMIC)
""")


@pytest.mark.child_process
def test_killed_mid_write_keeps_previous_checkpoint(tmp_path):
    path, marker = str(tmp_path / 'iter_1.pth'), str(tmp_path / 'stalled')
    proc = subprocess.Popen([sys.executable, '-c', CHILD, path, marker],
                            env=checkout_env(),
                            stdout=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 120
        while not os.path.exists(marker):
            assert proc.poll() is None, 'child exited before stalling'
            assert time.time() < deadline, 'child never started writing'
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_imported_this_checkout(proc.stdout.read())
    ckpt = load_checkpoint_file(path)
    assert ckpt['meta']['version'] == 1
    torch.testing.assert_close(ckpt['state_dict']['w'], torch.ones(200000))
    # the half-written new version only exists as a hidden temporary file
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    assert len(leftovers) == 1 and leftovers[0].startswith('.iter_1.pth.')


def _failing_write(monkeypatch):
    """Make every file write die after writing half its bytes."""

    class Boom(Exception):
        pass

    real_open, real_fdopen = open, os.fdopen

    class Half:

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            raise Boom('disk died')

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(
        'builtins.open', lambda *a, **k: Half(real_open(*a, **k)) if 'w' in
        (a[1] if len(a) > 1 else k.get('mode', 'r')) else real_open(*a, **k))
    monkeypatch.setattr(os, 'fdopen',
                        lambda *a, **k: Half(real_fdopen(*a, **k)))
    return Boom


def test_failed_write_plain_vs_atomic(tmp_path, monkeypatch):
    plain, atomic = str(tmp_path / 'plain.pth'), str(tmp_path / 'atomic.pth')
    old = dict(meta=dict(version=1), state_dict=dict(w=torch.ones(1000)))
    new = dict(meta=dict(version=2), state_dict=dict(w=torch.zeros(1000)))
    save_checkpoint(old, plain, backend_args=dict(backend='local'))
    save_checkpoint(old, atomic, backend_args=ATOMIC)
    import io
    buf = io.BytesIO()
    torch.save(new, buf)
    boom = _failing_write(monkeypatch)
    # mmengine's own LocalBackend truncates the previous checkpoint ...
    with pytest.raises(boom):
        LocalBackend().put(buf.getvalue(), plain)
    # ... ours ('atomic_local', selected by AtomicCheckpointHook) does not
    with pytest.raises(boom):
        save_checkpoint(new, atomic, backend_args=ATOMIC)
    monkeypatch.undo()
    with pytest.raises(CorruptCheckpointError, match='plain.pth'):
        load_checkpoint_file(plain)
    assert load_checkpoint_file(atomic)['meta']['version'] == 1
    assert sorted(os.listdir(tmp_path)) == ['atomic.pth', 'plain.pth']


def test_atomic_backend_is_selected(tmp_path):
    # plain local paths keep mmengine's backend; ours is chosen by name
    assert type(get_file_backend(str(tmp_path / 'a.pth'))) is LocalBackend
    backend = get_file_backend(backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    # text writes (e.g. mmengine's dumped configs) and permissions
    backend.put_text('hello', str(tmp_path / 'sub' / 'x.txt'))
    assert (tmp_path / 'sub' / 'x.txt').read_text() == 'hello'
    mask = os.umask(0)
    os.umask(mask)
    mode = os.stat(tmp_path / 'sub' / 'x.txt').st_mode & 0o777
    assert mode == 0o666 & ~mask
