"""tools/train.py / tools/test.py logic: task detection and config edits."""
import os.path as osp

import pytest
from child_process import run_in_checkout
from mmengine.config import Config

from mmslak.apis import task_family
from mmslak.utils.cli import (dump_metric, enable_amp, enable_visualization,
                              set_work_dir)


@pytest.mark.parametrize('cfg, family', [
    (dict(default_scope='mmseg'), 'mmseg'),
    (dict(default_scope='mmdet'), 'mmdet'),
    (dict(model=dict(type='mmpretrain.ImageClassifier')), 'mmpretrain'),
    (dict(model=dict(type='EncoderDecoder')), 'mmseg'),
])
def test_task_family(cfg, family):
    assert task_family(Config(cfg)) == family


def test_task_family_unknown():
    with pytest.raises(ValueError, match='default_scope'):
        task_family(Config(dict(model=dict(type='Foo'))))


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


def test_test_py_missing_checkpoint():
    result = run_in_checkout('tools/test.py', 'configs/upernet_slak_ade20k.py',
                             'no/such.pth')
    assert result.returncode != 0
    assert 'checkpoint not found: no/such.pth' in result.stderr
