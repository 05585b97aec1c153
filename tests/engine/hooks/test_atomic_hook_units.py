"""AtomicCheckpointHook piece by piece: its backend choice, the start-of-run
repairs (exact log lines, rank 0 only) and the failed-write error (errno,
exact message, the message hub and the hook put back to the previous
checkpoint). Expected messages are written out by hand."""
import errno
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import test_atomic_checkpoint_hook
import torch

import mmslak.engine.hooks.atomic_checkpoint_hook as hook_module
from mmslak.checkpoint import load_checkpoint_file
from mmslak.engine.hooks import AtomicCheckpointHook, CheckpointWriteError


def test_backend_for_local_out_dir_positional_args_and_old_file_args(tmp_path):
    assert AtomicCheckpointHook(out_dir=str(tmp_path)).backend_args == dict(
        backend='atomic_local')
    assert AtomicCheckpointHook(3).interval == 3
    # mmengine's deprecated file_client_args: left to mmengine, which
    # refuses it together with backend_args
    hook = AtomicCheckpointHook(file_client_args=dict(backend='disk'))
    assert hook.backend_args is None
    assert hook.file_client_args == dict(backend='disk')


class _Log:

    def __init__(self):
        self.lines = []

    def warning(self, msg):
        self.lines.append(msg)


def _start(work_dir, main=True, monkeypatch=None):
    """``before_run`` of an iteration-based hook on a stand-in runner."""
    if not main:
        monkeypatch.setattr(hook_module, 'is_main_process', lambda: False)
    runner = SimpleNamespace(work_dir=str(work_dir), logger=_Log())
    AtomicCheckpointHook(by_epoch=False).before_run(runner)
    return runner.logger.lines


def _complete(path):
    torch.save(dict(meta=dict(iter=1)), str(path))
    return str(path)


def test_temporary_removed_with_its_log_line(tmp_path):
    (tmp_path / '.iter_4.pth.abc123.tmp').write_bytes(b'half')
    assert _start(tmp_path) == [
        'AtomicCheckpointHook: removed the temporary file '
        '.iter_4.pth.abc123.tmp of a checkpoint write that did not finish'
    ]
    assert os.listdir(tmp_path) == []


def test_only_rank_0_and_only_an_existing_folder_is_touched(
        tmp_path, monkeypatch):
    assert _start(tmp_path / 'not_yet') == []  # no folder: nothing to do
    (tmp_path / '.iter_4.pth.abc123.tmp').write_bytes(b'half')
    (tmp_path / 'last_checkpoint').write_text('')
    assert _start(tmp_path, main=False, monkeypatch=monkeypatch) == []
    assert sorted(
        os.listdir(tmp_path)) == ['.iter_4.pth.abc123.tmp', 'last_checkpoint']


def test_empty_pointer_names_the_newest_by_number(tmp_path):
    pointer = tmp_path / 'last_checkpoint'
    pointer.write_text('')
    _complete(tmp_path / 'iter_2.pth')
    newest = _complete(tmp_path / 'iter_10.pth')  # after iter_2, not before
    assert _start(tmp_path) == [
        f'AtomicCheckpointHook: {pointer} is empty; it now names {newest}'
    ]
    assert pointer.read_text() == newest


def test_pointer_to_a_truncated_file_and_nothing_complete_is_removed(tmp_path):
    pointer = tmp_path / 'last_checkpoint'
    torn = tmp_path / 'iter_2.pth'
    torn.write_bytes(b'PK\x03\x04 not a zip')
    pointer.write_text(str(torn))
    assert _start(tmp_path) == [
        f'AtomicCheckpointHook: {pointer} names {torn}, which is truncated '
        'and no complete checkpoint is left; removed it (the run starts '
        'afresh)'
    ]
    assert os.listdir(tmp_path) == ['iter_2.pth']


def _fill_disk_at_write(monkeypatch, n):
    """The n-th file the atomic writer opens (1-based) fails with ENOSPC
    before any byte is written."""
    real, opened = os.fdopen, []

    def fdopen(*args, **kwargs):
        opened.append(1)
        if len(opened) == n:
            os.close(args[0])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, 'fdopen', fdopen)


def _failed(runner):
    with pytest.raises(CheckpointWriteError) as info:
        runner.train()
    assert info.value.errno == errno.ENOSPC
    return info.value.strerror


def _expected(work_dir, step, previous):
    target = osp.join(work_dir, f'iter_{step}.pth')
    return (f'could not write the checkpoint {target}: cannot write '
            f"{target!r}: No space left on device; the previous checkpoint "
            f'({previous}) is unchanged')


# the tiny Runner fixture of the hook's integration tests, shared
make_runner = test_atomic_checkpoint_hook.make_runner


def _hook(runner):
    return [h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)][0]


def test_first_write_fails_with_no_previous(tmp_path, monkeypatch,
                                            make_runner):
    runner = make_runner(tmp_path, max_iters=2)
    _fill_disk_at_write(monkeypatch, 1)
    assert _failed(runner) == _expected(tmp_path, 2, 'none')
    assert runner.message_hub.get_info('last_ckpt') is None
    assert _hook(runner).last_ckpt is None


def test_later_write_fails_hub_and_hook_name_the_previous(
        tmp_path, monkeypatch, make_runner):
    runner = make_runner(tmp_path, max_iters=4)
    _fill_disk_at_write(monkeypatch, 3)  # iter_2.pth, its pointer, iter_4
    previous = osp.join(tmp_path, 'iter_2.pth')
    assert _failed(runner) == _expected(tmp_path, 4, previous)
    assert runner.message_hub.get_info('last_ckpt') == previous
    assert _hook(runner).last_ckpt == previous


def test_other_rank_without_pointer_names_its_previous(tmp_path, monkeypatch,
                                                       make_runner):
    # ranks > 0 write no pointer: the previous checkpoint is the hook's own
    monkeypatch.setattr(hook_module, 'is_main_process', lambda: False)
    runner = make_runner(tmp_path, max_iters=4)
    _fill_disk_at_write(monkeypatch, 2)  # iter_2.pth, then iter_4.pth
    previous = osp.join(tmp_path, 'iter_2.pth')
    assert _failed(runner) == _expected(tmp_path, 4, previous)
    assert not osp.exists(osp.join(tmp_path, 'last_checkpoint'))


def test_best_checkpoint_resave_keeps_the_step_it_was_taken_at(tmp_path):
    """After a new best, mmengine saves the latest checkpoint again with
    meta iter = the iterations done (2), not runner.save_checkpoint's
    default for a periodic save (iter + 1 = 3)."""
    from mmengine.evaluator import BaseMetric, Evaluator
    from mmengine.runner import Runner
    from test_atomic_checkpoint_hook import _Data, _Model

    class Count(BaseMetric):

        def process(self, data_batch, data_samples):
            self.results.append(1)

        def compute_metrics(self, results):
            return dict(acc=float(len(results)))

    loader = dict(
        dataset=_Data(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        collate_fn=dict(type='default_collate'))
    runner = Runner(
        model=_Model(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            loader, sampler=dict(type='InfiniteSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=2, val_interval=2),
        val_dataloader=loader,
        val_cfg=dict(),
        val_evaluator=Evaluator([Count()]),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(
                type='AtomicCheckpointHook',
                interval=2,
                by_epoch=False,
                save_best='acc',
                rule='greater')),
        log_level='WARNING',
        default_scope='mmengine')
    runner.train()
    ckpt = load_checkpoint_file(osp.join(tmp_path, 'iter_2.pth'))
    assert ckpt['meta']['iter'] == 2 and ckpt['meta']['epoch'] == 0
    assert ckpt['message_hub']['runtime_info']['best_score'] == 4.0
