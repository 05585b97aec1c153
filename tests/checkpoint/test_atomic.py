"""mmslak.checkpoint.atomic: a checkpoint write that dies midway leaves the
previous file usable (a killed child, a failed write, the backend mmengine
selects), and atomic_write_bytes piece by piece: where the temporary file
lives and how it is named, the errors (kind, errno and exact message naming
the output), symlinks, file modes and text writes. Expected values are
written out by hand."""
import errno
import os
import os.path as osp
import re
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
import mmslak.checkpoint.atomic as atomic
from mmslak.checkpoint import (AtomicLocalBackend, CorruptCheckpointError,
                               atomic_write_bytes, load_checkpoint_file)

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


def test_temporary_file_is_hidden_beside_the_output(tmp_path, monkeypatch):
    target = tmp_path / 'out' / 'ckpt.pth'
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.extend(os.listdir(target.parent))
        assert open(src, 'rb').read() == b'new'  # complete before renaming
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, 'replace', spy)
    atomic_write_bytes(b'new', str(target))
    # exactly one file before the rename: '.ckpt.pth.<random>.tmp', in the
    # output's own folder (os.replace cannot cross file systems)
    assert len(seen) == 1, seen
    assert re.fullmatch(r'\.ckpt\.pth\.[A-Za-z0-9_]+\.tmp', seen[0]), seen
    assert os.listdir(target.parent) == ['ckpt.pth']
    assert target.read_bytes() == b'new'


def test_output_that_is_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        atomic_write_bytes(b'x', str(tmp_path))
    assert info.value.errno == errno.EISDIR
    assert info.value.strerror == (
        f'cannot write {str(tmp_path)!r}: it is a directory; give a file '
        'path')
    assert os.listdir(tmp_path) == []


def test_folder_that_cannot_be_made_names_output_and_keeps_errno(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    target = str(blocker / 'sub' / 'ckpt.pth')
    with pytest.raises(OSError) as info:
        atomic_write_bytes(b'x', target)
    # os.makedirs under a file: ENOTDIR (NotADirectoryError), renamed
    assert type(info.value) is NotADirectoryError
    assert info.value.errno == errno.ENOTDIR
    assert info.value.strerror == (
        f'cannot write {target!r}: {os.strerror(errno.ENOTDIR)}')


def test_failed_write_names_output_keeps_errno_and_cleans_up(
        tmp_path, monkeypatch):
    target = tmp_path / 'ckpt.pth'
    target.write_bytes(b'old')

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device',
                      '/elsewhere/.tmp')

    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(b'new', str(target))
    assert type(info.value) is OSError and info.value.errno == errno.ENOSPC
    # the output's name, not the temporary file's
    assert info.value.strerror == (
        f'cannot write {str(target)!r}: No space left on device')
    assert os.listdir(tmp_path) == ['ckpt.pth']
    assert target.read_bytes() == b'old'


def test_error_without_strerror_is_quoted_whole(tmp_path, monkeypatch):

    def bare(*args, **kwargs):
        raise PermissionError('denied by policy')

    monkeypatch.setattr(os, 'replace', bare)
    target = str(tmp_path / 'ckpt.pth')
    with pytest.raises(PermissionError) as info:
        atomic_write_bytes(b'new', target)
    assert info.value.errno is None
    assert info.value.strerror == f'cannot write {target!r}: denied by policy'
    assert os.listdir(tmp_path) == []


def test_writes_through_a_symlink_to_its_target(tmp_path):
    real = tmp_path / 'real.pth'
    real.write_bytes(b'old')
    link = tmp_path / 'link.pth'
    link.symlink_to(real)
    atomic_write_bytes(b'new', str(link))
    assert link.is_symlink() and real.read_bytes() == b'new'


def test_mode_is_what_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(b'x', str(tmp_path / 'a.pth'))
        with open(tmp_path / 'b.pth', 'wb') as f:  # the oracle
            f.write(b'x')
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / 'a.pth').st_mode & 0o777
    assert mode == 0o640 == os.stat(tmp_path / 'b.pth').st_mode & 0o777
    assert os.umask(old) == old  # _umask left the process's umask alone


def test_put_text_encodes_utf8_by_default(tmp_path):
    backend = AtomicLocalBackend()
    backend.put_text('größe ✓', str(tmp_path / 'a.txt'))
    assert (tmp_path /
            'a.txt').read_bytes() == b'gr\xc3\xb6\xc3\x9fe \xe2\x9c\x93'
    backend.put_text('größe', str(tmp_path / 'b.txt'), encoding='latin-1')
    assert (tmp_path / 'b.txt').read_bytes() == b'gr\xf6\xdfe'
    backend.put(b'\x00\x01', str(tmp_path / 'c.bin'))
    assert (tmp_path / 'c.bin').read_bytes() == b'\x00\x01'


def test_directory_fsync_failure_is_ignored(tmp_path, monkeypatch):
    real_open = os.open

    def no_dir_open(path, flags, *args):
        if osp.isdir(path):
            raise PermissionError(errno.EACCES, 'no')
        return real_open(path, flags, *args)

    monkeypatch.setattr(atomic.os, 'open', no_dir_open)
    atomic_write_bytes(b'x', str(tmp_path / 'a.pth'))
    assert (tmp_path / 'a.pth').read_bytes() == b'x'
