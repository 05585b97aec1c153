"""Atomic checkpoint writes: a temporary file in the target directory, then
``os.replace``, so a run killed mid-write leaves the previous file intact.

mmengine's ``save_checkpoint`` writes through a file backend chosen by the
path prefix; :class:`AtomicLocalBackend` is mmengine's ``LocalBackend``
with atomic ``put`` / ``put_text``. It is registered as ``'atomic_local'``
only: mmengine's own ``'local'`` backend is left as it is. mmslak's
:class:`~mmslak.engine.hooks.AtomicCheckpointHook` selects it (and writes the
``last_checkpoint`` pointer atomically), and the converters write their
outputs with :func:`atomic_write_bytes`.
"""
import errno
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio.backends import LocalBackend, register_backend

__all__ = ['atomic_write_bytes', 'AtomicLocalBackend']


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _naming(error: OSError, filepath: str) -> OSError:
    """The same kind of OSError, naming the output rather than the
    temporary file."""
    return type(error)(error.errno, f'cannot write {filepath!r}: '
                       f'{error.strerror or error}')


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that readers see either the old
    file or the complete new one, never a partial file."""
    # Write through a symlink to its target, as open(..., 'wb') would.
    filepath = osp.realpath(osp.expanduser(str(filepath)))
    directory = osp.dirname(filepath) or '.'
    if osp.isdir(filepath):
        raise IsADirectoryError(
            errno.EISDIR, f'cannot write {filepath!r}: it is a directory; '
            'give a file path')
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=directory)
    except OSError as e:
        raise _naming(e, filepath) from None
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0o600; give the file the mode open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, filepath)
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _naming(e, filepath) from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's LocalBackend whose writes are atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


register_backend('atomic_local', AtomicLocalBackend, force=True)
