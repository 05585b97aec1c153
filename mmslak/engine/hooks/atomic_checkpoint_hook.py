"""mmengine's CheckpointHook whose local writes are all atomic."""
import os.path as osp
import tempfile

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from mmslak.checkpoint.atomic import atomic_write_bytes

__all__ = ['AtomicCheckpointHook']


class _WorkDirProxy:
    """The runner, except that ``work_dir`` is another folder."""

    def __init__(self, runner, work_dir: str) -> None:
        self._runner = runner
        self.work_dir = work_dir

    def __getattr__(self, name):
        return getattr(self._runner, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a torn file behind.

    mmengine 0.10.7's hook writes checkpoints through the file backend that
    ``backend_args`` selects, but the ``last_checkpoint`` pointer (which
    ``resume='auto'`` reads) with a plain ``open(..., 'w')``. For local
    output folders this hook selects mmslak's ``'atomic_local'`` backend
    (temporary file, fsync, ``os.replace``) and writes the pointer the same
    way; other ``backend_args`` / remote ``out_dir`` are left alone.

    Example::

        default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
    """

    def __init__(self, *args, backend_args=None, **kwargs) -> None:
        out_dir = kwargs.get('out_dir')
        local = out_dir is None or '://' not in str(out_dir)
        if backend_args is None and local and 'file_client_args' not in kwargs:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine writes the pointer into runner.work_dir with open(); let
        # it write into a scratch folder, then publish it atomically.
        with tempfile.TemporaryDirectory() as scratch:
            super()._save_checkpoint_with_step(
                _WorkDirProxy(runner, scratch), step, meta)
        if is_main_process():
            atomic_write_bytes(
                str(self.last_ckpt).encode(),
                osp.join(runner.work_dir, 'last_checkpoint'))
