"""Train 2N steps straight vs. N steps, then resume in a NEW process for N
more: weights, optimizer state, lr, EMA and sparse masks must be equal."""
import os.path as osp

import pytest
import torch
from child_process import run_in_checkout

from mmslak.checkpoint import load_checkpoint_file


def _assert_equal(resumed, straight, path=''):
    if isinstance(straight, dict):
        assert set(resumed) == set(straight), path
        for key in straight:
            _assert_equal(resumed[key], straight[key], f'{path}.{key}')
    elif isinstance(straight, (list, tuple)):
        assert len(resumed) == len(straight), path
        for i, (a, b) in enumerate(zip(resumed, straight)):
            _assert_equal(a, b, f'{path}[{i}]')
    elif torch.is_tensor(straight):
        torch.testing.assert_close(
            resumed, straight, rtol=0, atol=0, msg=lambda m: f'{path}: {m}')
    else:
        assert resumed == straight, path


@pytest.mark.child_process
@pytest.mark.parametrize('by_epoch', [False, True], ids=['iter', 'epoch'])
def test_resume_in_new_process_equals_straight_run(tmp_path, by_epoch,
                                                   toy_runner, toy_state,
                                                   train_toy_script):
    # iteration-based (mmseg-style): 6 iterations, checkpoint at 3 (the
    # resumed loop must skip 3 batches mid-epoch; warm-up ends at 3);
    # epoch-based (mmdet-style): 2 epochs of 4 iterations, checkpoint at 1
    length, interval = (2, 1) if by_epoch else (6, 3)
    work = str(tmp_path / 'straight')
    runner = toy_runner(work, by_epoch, length, interval, sparse=True)
    runner.train()
    straight = toy_state(runner)
    ckpt = osp.join(
        work, f'epoch_{interval}.pth' if by_epoch else f'iter_{interval}.pth')
    assert osp.isfile(ckpt)
    saved = load_checkpoint_file(ckpt)
    assert 'sparsity' in saved and saved['sparsity']['masks']

    out = str(tmp_path / 'resumed.pth')
    cmd = [
        train_toy_script,
        str(tmp_path / 'resumed'), '--length',
        str(length), '--interval',
        str(interval), '--resume-from', ckpt, '--out', out
    ]
    cmd.append('--sparse')
    if by_epoch:
        cmd.append('--by-epoch')
    proc = run_in_checkout(*cmd, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    resumed = load_checkpoint_file(out)

    assert resumed['iter'] == straight['iter'] == (8 if by_epoch else 6)
    assert resumed['epoch'] == straight['epoch']
    # the run did change things after the checkpoint
    first = next(k for k in saved['state_dict']
                 if k.endswith('pwconv1.weight'))
    assert not torch.equal(saved['state_dict'][first],
                           straight['model'][first])
    _assert_equal(resumed, straight)
    assert straight['sparsity']['num_updates'] >= 2
