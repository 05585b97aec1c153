"""AtomicCheckpointHook: checkpoints AND the last_checkpoint pointer are
written through a temporary file and os.replace; failed writes name the
file and the reason and keep the previous checkpoint; torn pointers and
temporaries left by a kill are repaired at the next start."""
import errno
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmslak  # noqa: F401
import mmslak.checkpoint.atomic as atomic
from mmslak.checkpoint import AtomicLocalBackend, load_checkpoint_file
from mmslak.engine.hooks import AtomicCheckpointHook, CheckpointWriteError


class _Data(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g), targets=i % 2)


class _Model(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, inputs, targets=None, mode='tensor'):
        logits = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, targets))
        return logits


@pytest.fixture
def make_runner(plain_runner):
    """The shared tiny Runner on this file's model and data, writing its
    checkpoints with AtomicCheckpointHook every 2 iterations."""

    def make(work_dir, max_iters=4, resume=False):
        return plain_runner.build_runner(
            work_dir,
            max_iters,
            checkpoint=dict(
                type='AtomicCheckpointHook', interval=2, by_epoch=False),
            model=_Model(),
            dataset=_Data(),
            resume=resume,
            log_level='WARNING')

    return make


def _pointer(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def _disk_fills_up(monkeypatch, written):
    """Every file opened by the atomic writer takes half its bytes, then
    fails with ENOSPC."""
    real = os.fdopen

    class Filling:

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            self.f.flush()
            written.append(len(data) // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(os, 'fdopen', lambda *a, **k: Filling(real(*a, **k)))


def _fail_at_iter4(make_runner, tmp_path, monkeypatch, fault):
    runner = make_runner(tmp_path, max_iters=2)
    runner.train()
    assert _pointer(tmp_path) == osp.join(tmp_path, 'iter_2.pth')
    runner = make_runner(tmp_path, max_iters=4, resume=True)
    fault(monkeypatch)
    with pytest.raises(CheckpointWriteError) as info:
        runner.train()
    monkeypatch.undo()
    return str(info.value)


def test_disk_full_names_file_and_keeps_previous(tmp_path, monkeypatch,
                                                 make_runner):
    written = []
    message = _fail_at_iter4(make_runner, tmp_path, monkeypatch,
                             lambda mp: _disk_fills_up(mp, written))
    assert written and written[0] > 1000  # it failed mid-file
    assert osp.join(tmp_path, 'iter_4.pth') in message
    assert 'No space left on device' in message
    assert osp.join(tmp_path, 'iter_2.pth') in message  # the previous one
    assert not osp.exists(tmp_path / 'iter_4.pth')
    assert _pointer(tmp_path) == osp.join(tmp_path, 'iter_2.pth')
    assert load_checkpoint_file(_pointer(tmp_path))['meta']['iter'] == 2
    assert [f for f in os.listdir(tmp_path) if f.endswith('.tmp')] == []


def test_read_only_folder_names_file_and_reason(tmp_path, monkeypatch,
                                                make_runner):
    # tests may run as root, which ignores file modes: the file system says
    # it is read-only when the writer creates its temporary file
    def read_only(mp):

        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        mp.setattr('tempfile.mkstemp', refuse)

    message = _fail_at_iter4(make_runner, tmp_path, monkeypatch, read_only)
    assert osp.join(tmp_path, 'iter_4.pth') in message
    assert 'Read-only file system' in message
    assert load_checkpoint_file(_pointer(tmp_path))['meta']['iter'] == 2


def _start_and_log(make_runner, work_dir, train_logged):
    return train_logged(make_runner(work_dir, max_iters=4, resume=True))


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'missing'])
def test_torn_pointer_is_repaired_at_start(tmp_path, train_logged, damage,
                                           make_runner):
    make_runner(tmp_path, max_iters=4).train()
    pointer = osp.join(tmp_path, 'last_checkpoint')
    newest = osp.join(tmp_path, 'iter_4.pth')
    if damage == 'empty':
        open(pointer, 'w').close()
    elif damage == 'truncated':
        data = open(newest, 'rb').read()
        open(newest, 'wb').write(data[:len(data) // 2])
    else:
        os.remove(newest)
    text = _start_and_log(make_runner, tmp_path, train_logged)
    expected = {
        'empty': 'is empty',
        'truncated': 'which is truncated',
        'missing': 'which is missing'
    }[damage]
    assert expected in text
    if damage == 'empty':  # it resumed from iter_4: nothing left to do
        assert 'now names ' + newest in text
    else:  # it resumed from iter_2 and trained 2 more iterations
        assert 'now names ' + osp.join(tmp_path, 'iter_2.pth') in text
    assert _pointer(tmp_path) == newest
    assert load_checkpoint_file(newest)['meta']['iter'] == 4


def test_no_complete_checkpoint_left(tmp_path, train_logged, make_runner):
    open(tmp_path / 'iter_2.pth', 'wb').write(b'PK\x03\x04 not a zip')
    open(tmp_path / 'last_checkpoint', 'w').write(str(tmp_path / 'iter_2.pth'))
    text = _start_and_log(make_runner, tmp_path, train_logged)
    assert 'no complete checkpoint is left' in text
    assert load_checkpoint_file(_pointer(tmp_path))['meta']['iter'] == 4


def test_temporaries_of_a_killed_write_are_removed(tmp_path, train_logged,
                                                   make_runner):
    make_runner(tmp_path, max_iters=2).train()
    stale = tmp_path / '.iter_4.pth.k2j3h4.tmp'
    stale.write_bytes(b'half a checkpoint')
    mine = tmp_path / '.notes.tmp'  # not a checkpoint temporary: kept
    mine.write_bytes(b'x')
    text = _start_and_log(make_runner, tmp_path, train_logged)
    assert 'removed the temporary file .iter_4.pth.k2j3h4.tmp' in text
    assert not stale.exists() and mine.exists()


def test_every_write_is_atomic(plain_runner, tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, 'replace', spy)
    work_dir = str(tmp_path / 'work')
    runner = plain_runner.build_runner(
        work_dir,
        4,
        checkpoint=dict(
            type='AtomicCheckpointHook', interval=2, by_epoch=False))
    runner.train()
    hook = [h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)]
    assert len(hook) == 1
    assert isinstance(hook[0].file_backend, AtomicLocalBackend)
    assert replaced == [
        'iter_2.pth', 'last_checkpoint', 'iter_4.pth', 'last_checkpoint'
    ]
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == os.path.join(work_dir, 'iter_4.pth')
    # nothing left behind: no temporary files, no scratch folder
    names = set(os.listdir(work_dir))
    assert {'iter_2.pth', 'iter_4.pth', 'last_checkpoint'} <= names
    assert not [n for n in names if n.endswith('.tmp') or n.startswith('.')]
    # resume='auto' follows the pointer
    resumed = plain_runner.build_runner(work_dir, 6, resume=True)
    resumed.train()
    assert resumed.iter == 6


def test_plain_hook_pointer_is_not_atomic(plain_runner, tmp_path, monkeypatch):
    """The oracle for the test above: mmengine's own hook writes neither
    file through os.replace."""
    replaced = []
    monkeypatch.setattr(atomic.os, 'replace', lambda s, d: replaced.append(d))
    plain_runner.build_runner(str(tmp_path), 2).train()
    assert replaced == []


@pytest.mark.parametrize('kwargs, backend', [
    (dict(), dict(backend='atomic_local')),
    (dict(out_dir='s3://bucket/ckpt'), None),
    (dict(backend_args=dict(backend='local')), dict(backend='local')),
])
def test_backend_choice(kwargs, backend):
    assert AtomicCheckpointHook(**kwargs).backend_args == backend
