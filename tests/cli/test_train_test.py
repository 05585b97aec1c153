"""tools/train.py / tools/test.py logic (mmslak.cli.train_test): config
edits, the CheckpointMatchHook default and its switch."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmslak.checkpoint import CorruptCheckpointError
from mmslak.cli.train_test import (check_checkpoint_match,
                                   check_local_checkpoint, dump_metric,
                                   enable_amp, enable_visualization,
                                   set_work_dir)


def test_work_dir_priority():
    cfg = Config(dict())
    set_work_dir(cfg, None, 'configs/x/my_cfg.py')
    assert cfg.work_dir == osp.join('./work_dirs', 'my_cfg')
    set_work_dir(cfg, 'w', 'configs/x/my_cfg.py')
    assert cfg.work_dir == 'w'


def test_amp():
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    with pytest.raises(ValueError, match='OptimWrapper'):
        enable_amp(Config(dict(optim_wrapper=dict(type='Other'))))


@pytest.mark.parametrize('family', ['mmseg', 'mmdet', 'mmpretrain'])
def test_visualization(family):
    cfg = Config(
        dict(
            default_hooks=dict(visualization=dict(type='V')),
            visualizer=dict(type='Vis')))
    enable_visualization(cfg, family, True, '/tmp/vis', 0.5)
    hook = cfg.default_hooks.visualization
    assert hook.show and hook.wait_time == 0.5
    if family == 'mmseg':
        assert hook.draw and cfg.visualizer.save_dir == '/tmp/vis'
        assert hook.interval == 1
    elif family == 'mmdet':
        assert hook.draw and hook.test_out_dir == '/tmp/vis'
    else:
        assert hook.enable and hook.out_dir == '/tmp/vis'
    with pytest.raises(RuntimeError, match='visualization hook'):
        enable_visualization(
            Config(dict(default_hooks={})), family, False, '/tmp/vis', 1)


def test_dump_metric():
    assert type(dump_metric('mmdet', 'a.pkl')).__name__ == 'DumpDetResults'
    assert type(dump_metric('mmseg', 'a.pkl')).__name__ == 'DumpResults'
    with pytest.raises(ValueError, match='.pkl'):
        dump_metric('mmseg', 'a.txt')


SPARSE = dict(type='SparseTrainingHook', init='checkpoint')


def _types(cfg):
    return [h['type'] for h in cfg.custom_hooks]


def test_hook_added_by_default():
    cfg = Config(dict(custom_hooks=[SPARSE]))
    check_checkpoint_match(cfg, strict=True, allow_partial=False)
    assert _types(cfg) == ['SparseTrainingHook', 'CheckpointMatchHook']
    assert cfg.custom_hooks[1]['strict'] is True
    cfg = Config(dict())
    check_checkpoint_match(cfg, strict=False, allow_partial=False)
    assert cfg.custom_hooks == [dict(type='CheckpointMatchHook', strict=False)]


def test_users_hook_kept():
    mine = dict(type='CheckpointMatchHook', prefixes=['neck.'])
    cfg = Config(dict(custom_hooks=[mine]))
    check_checkpoint_match(cfg, strict=True, allow_partial=False)
    assert cfg.custom_hooks == [mine]


def test_allow_partial_removes_it():
    cfg = Config(
        dict(custom_hooks=[SPARSE,
                           dict(type='mmslak.CheckpointMatchHook')]))
    check_checkpoint_match(cfg, strict=True, allow_partial=True)
    assert _types(cfg) == ['SparseTrainingHook']


def test_local_checkpoint_format(tmp_path):
    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    with pytest.raises(
            CorruptCheckpointError, match='is not a PyTorch checkpoint'):
        check_local_checkpoint(str(text))
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {}}, str(good))
    check_local_checkpoint(str(good))  # passes
    check_local_checkpoint(None)  # no load_from
    check_local_checkpoint('https://example.com/x.pth')  # left to loaders
