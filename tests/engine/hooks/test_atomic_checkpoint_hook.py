"""AtomicCheckpointHook: checkpoints AND the last_checkpoint pointer are
written through a temporary file and os.replace."""
import os

import pytest

import mmslak.checkpoint.atomic as atomic
from mmslak.checkpoint import AtomicLocalBackend
from mmslak.engine.hooks import AtomicCheckpointHook


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
