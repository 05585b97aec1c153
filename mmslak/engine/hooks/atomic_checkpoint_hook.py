"""mmengine's CheckpointHook made safe against kills and full disks: every
local write atomic, torn leftovers repaired at the next start, failed writes
reported with the file and the reason."""
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import List

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from mmslak.checkpoint.atomic import atomic_write_bytes

__all__ = ['AtomicCheckpointHook', 'CheckpointWriteError']

POINTER = 'last_checkpoint'
# temporaries of mmslak.checkpoint.atomic_write_bytes: .<name>.<random>.tmp
_TEMPORARY = re.compile(r'^\.(.+\.pth|last_checkpoint)\.[^.]+\.tmp$')


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the previous one is intact)."""


class _WorkDirProxy:
    """The runner, except that ``work_dir`` is another folder."""

    def __init__(self, runner, work_dir: str) -> None:
        self._runner = runner
        self.work_dir = work_dir

    def __getattr__(self, name):
        return getattr(self._runner, name)


def _is_complete(path: str) -> bool:
    """A torch checkpoint is a zip archive whose directory is written last,
    so a truncated file is not a valid zip."""
    return osp.isfile(path) and zipfile.is_zipfile(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) that never leaves a torn file.

    mmengine 0.10.7's hook writes checkpoints through the file backend that
    ``backend_args`` selects, but the ``last_checkpoint`` pointer (which
    ``resume='auto'`` reads) with a plain ``open(..., 'w')``. This hook:

    - selects mmslak's ``'atomic_local'`` backend for local output folders
      (temporary file, fsync, ``os.replace``; other ``backend_args`` /
      remote ``out_dir`` are left alone), so a kill mid-write leaves the
      previous checkpoint intact, and writes the pointer the same way;
    - at the start of a run, removes the temporaries of a killed write and
      repairs a pointer to a missing or truncated checkpoint to the newest
      complete one (each with a log line), before auto-resume reads it;
    - turns a write that fails (disk full, read-only folder) into
      :class:`CheckpointWriteError` naming the file and the reason; the
      pointer still names the previous checkpoint.

    Example::

        default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
    """

    def __init__(self, *args, backend_args=None, **kwargs) -> None:
        out_dir = kwargs.get('out_dir')
        local = out_dir is None or '://' not in str(out_dir)
        if backend_args is None and local and 'file_client_args' not in kwargs:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def before_run(self, runner) -> None:
        if is_main_process() and osp.isdir(runner.work_dir):
            self._remove_temporaries(runner)
            self._repair_pointer(runner)
        super().before_run(runner)

    def _remove_temporaries(self, runner) -> None:
        for name in sorted(os.listdir(runner.work_dir)):
            if _TEMPORARY.match(name):
                os.remove(osp.join(runner.work_dir, name))
                runner.logger.warning(
                    'AtomicCheckpointHook: removed the temporary file '
                    f'{name} of a checkpoint write that did not finish')

    def _repair_pointer(self, runner) -> None:
        pointer = osp.join(runner.work_dir, POINTER)
        if not osp.isfile(pointer):
            return
        with open(pointer) as f:
            target = f.read().strip()
        if _is_complete(target):
            return
        found = self._complete_checkpoints(runner.work_dir)
        why = 'is empty' if not target else f'names {target}, which is ' + (
            'truncated' if osp.isfile(target) else 'missing')
        if found:
            atomic_write_bytes(found[-1].encode(), pointer)
            runner.logger.warning(f'AtomicCheckpointHook: {pointer} {why}; '
                                  f'it now names {found[-1]}')
        else:
            os.remove(pointer)
            runner.logger.warning(f'AtomicCheckpointHook: {pointer} {why} '
                                  'and no complete checkpoint is left; '
                                  'removed it (the run starts afresh)')

    def _complete_checkpoints(self, folder: str) -> List[str]:
        """Complete checkpoints named by ``filename_tmpl``, oldest first."""
        pattern = re.compile(
            '^' +
            re.escape(self.filename_tmpl).replace(re.escape('{}'), r'(\d+)') +
            '$')
        steps = sorted((int(m.group(1)), name) for name in os.listdir(folder)
                       for m in [pattern.match(name)] if m)
        paths = [osp.join(folder, name) for _, name in steps]
        return [p for p in paths if _is_complete(p)]

    def _save_checkpoint_with_step(self, runner, step, meta):
        pointer = osp.join(runner.work_dir, POINTER)
        previous = getattr(self, 'last_ckpt', None)
        if previous is None and osp.isfile(pointer):  # resumed: ask the file
            with open(pointer) as f:
                previous = f.read().strip()
        try:
            # mmengine writes the pointer into runner.work_dir with open();
            # let it write into a scratch folder, then publish it atomically
            with tempfile.TemporaryDirectory() as scratch:
                super()._save_checkpoint_with_step(
                    _WorkDirProxy(runner, scratch), step, meta)
        except OSError as e:
            failed, self.last_ckpt = self.last_ckpt, previous
            runner.message_hub.update_info('last_ckpt', previous)
            raise CheckpointWriteError(
                e.errno, f'could not write the checkpoint {failed}: '
                f'{e.strerror or e}; the previous checkpoint '
                f'({previous or "none"}) is unchanged') from e
        if is_main_process():
            atomic_write_bytes(str(self.last_ckpt).encode(), pointer)
