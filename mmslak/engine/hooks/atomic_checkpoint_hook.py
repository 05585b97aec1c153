"""mmengine's CheckpointHook made safe against kills and full disks."""
import os
import os.path as osp
import re
import shutil
import zipfile
from typing import List, Optional

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


class _PointerStaging:
    """The runner as CheckpointHook sees it, with ``work_dir`` moved to a
    staging folder: upstream writes ``last_checkpoint`` there with a plain
    ``open()``, and we move it into place with one atomic rename."""

    def __init__(self, runner, staging: str) -> None:
        self._runner = runner
        self.work_dir = staging

    def __getattr__(self, name):
        return getattr(self._runner, name)


def _is_complete(path: str) -> bool:
    """A torch checkpoint is a zip archive whose directory is written last,
    so a truncated file is not a valid zip."""
    return osp.isfile(path) and zipfile.is_zipfile(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) for runs that must survive faults.

    - checkpoints go through the ``'atomic_local'`` backend by default (a
      temporary file, fsync, rename): a kill mid-write leaves the previous
      checkpoint intact;
    - the ``last_checkpoint`` pointer is written to a staging folder and
      renamed into place, so it is never torn;
    - at the start of a run, temporaries left by a killed write are removed
      and a pointer to a missing or truncated checkpoint is repaired to the
      newest complete one (each with a log line), before auto-resume reads
      it;
    - a write that fails (disk full, read-only folder) raises
      :class:`CheckpointWriteError` naming the file and the reason; the
      pointer still names the previous checkpoint.

    Example::

        default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook',
                                             interval=1))
    """

    def __init__(self, *args, backend_args: Optional[dict] = None, **kwargs):
        if backend_args is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def before_run(self, runner) -> None:
        if is_main_process() and osp.isdir(runner.work_dir):
            self._remove_temporaries(runner)
            self._repair_pointer(runner)
        super().before_run(runner)

    def _remove_temporaries(self, runner) -> None:
        staging = osp.join(runner.work_dir, '.pointer')
        if osp.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
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
        staging = osp.join(runner.work_dir, '.pointer')
        os.makedirs(staging, exist_ok=True)
        previous = getattr(self, 'last_ckpt', None)
        pointer = osp.join(runner.work_dir, POINTER)
        named = previous
        if named is None and osp.isfile(pointer):  # resumed: ask the pointer
            with open(pointer) as f:
                named = f.read().strip()
        try:
            super()._save_checkpoint_with_step(
                _PointerStaging(runner, staging), step, meta)
        except OSError as e:
            failed = self.last_ckpt
            self.last_ckpt = previous
            runner.message_hub.update_info('last_ckpt', previous)
            reason = e.strerror or str(e)
            raise CheckpointWriteError(
                e.errno, f'could not write the checkpoint {failed}: '
                f'{reason}; the previous checkpoint ({named or "none"}) is '
                'unchanged') from e
        if is_main_process():
            os.replace(
                osp.join(staging, POINTER), osp.join(runner.work_dir, POINTER))
