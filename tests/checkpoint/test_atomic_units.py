"""atomic_write_bytes piece by piece: where the temporary file lives and how
it is named, the errors (kind, errno and exact message naming the output),
symlinks, file modes and text writes. Expected values are written out by
hand."""
import errno
import os
import os.path as osp
import re

import pytest

import mmslak.checkpoint.atomic as atomic
from mmslak.checkpoint import AtomicLocalBackend, atomic_write_bytes


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
