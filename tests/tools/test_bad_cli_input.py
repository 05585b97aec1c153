"""The tools on bad input, run as child processes of this checkout: a
checkpoint of another architecture or other kernel sizes (test and
training), malformed ``--cfg-options``,
non-positive ``--shape``. Each: exit status and message."""
import importlib.util
import os.path as osp
import runpy
import sys

import pytest
import torch
import torchvision

from mmslak.apis import init_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ADE_CFG = osp.join(REPO, 'configs/demo/upernet_slak-demo_toy-ade.py')


def _save(model, path):
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(path))
    return str(path)


@pytest.fixture
def checkpoints(clean_toy, tmp_path, monkeypatch):
    """A torchvision ResNet-18, the demo model with other kernel sizes,
    and the demo model itself."""
    monkeypatch.setenv('MMSLAK_TOY_DATA', clean_toy)
    other = init_model(
        ADE_CFG, cfg_options={'model.backbone.kernel_sizes': (7, 7, 5, 5)})
    return dict(
        resnet=_save(torchvision.models.resnet18(), tmp_path / 'resnet.pth'),
        kernels=_save(other, tmp_path / 'k7.pth'),
        same=_save(init_model(ADE_CFG), tmp_path / 'same.pth'))


def _test(run_tool, toy, ckpt, *extra):
    return run_tool(
        'tools/test.py',
        ADE_CFG,
        ckpt,
        '--work-dir',
        'work',
        *extra,
        env=dict(MMSLAK_TOY_DATA=toy))


def test_test_tool_refuses_another_architecture(run_tool, clean_toy,
                                                checkpoints):
    proc = _test(run_tool, clean_toy, checkpoints['resnet'])
    assert proc.returncode == 1, proc.output[-3000:]
    assert 'the loaded checkpoint does not match EncoderDecoder' in \
        proc.stderr
    assert 'missing in the checkpoint' in proc.stderr
    assert 'unexpected (not in the model)' in proc.stderr
    assert 'conv1.weight' in proc.stderr  # a ResNet key, listed
    assert '--allow-partial-load' in proc.stderr
    assert 'Traceback' not in proc.output
    assert 'aAcc:' not in proc.output  # nothing was evaluated


def test_test_tool_refuses_other_kernel_sizes(run_tool, clean_toy,
                                              checkpoints):
    proc = _test(run_tool, clean_toy, checkpoints['kernels'])
    assert proc.returncode == 1, proc.output[-3000:]
    # stage 0's Kx5 strip: 7 in the checkpoint, 13 in the model
    key = 'backbone.stages.0.0.large_kernel.LoRA1.conv.weight'
    assert f'{key}: (31, 1, 7, 3) vs (31, 1, 13, 3)' in proc.stderr


def test_test_tool_partial_load_and_matching_checkpoint(
        run_tool, clean_toy, checkpoints):
    proc = _test(run_tool, clean_toy, checkpoints['resnet'],
                 '--allow-partial-load')
    assert proc.returncode == 0, proc.output[-3000:]
    assert '--allow-partial-load: checkpoint keys that do not match' in \
        proc.output
    assert 'mIoU:' in proc.output
    proc = _test(run_tool, clean_toy, checkpoints['same'])
    assert proc.returncode == 0, proc.output[-3000:]
    assert 'mIoU:' in proc.output


def test_train_load_from_another_architecture(run_tool, clean_toy,
                                              checkpoints):
    proc = run_tool(
        'tools/train.py',
        ADE_CFG,
        '--work-dir',
        'work',
        '--cfg-options',
        f"load_from={checkpoints['resnet']}",
        'train_cfg.max_iters=1',
        env=dict(MMSLAK_TOY_DATA=clean_toy))
    assert proc.returncode == 1, proc.output[-3000:]
    assert 'does not match EncoderDecoder' in proc.stderr
    assert 'backbone.downsample_layers.0.0.weight' in proc.stderr
    assert 'Traceback' not in proc.output


def test_malformed_cfg_options(monkeypatch, capsys):
    # every malformed form: tests/cli/test_cfg_options.py; here the wiring
    # of tools/train.py (in-process: argparse exits before any work)
    option = 'model.backbone.drop_path_rate'
    monkeypatch.setattr(sys, 'argv', [
        'train.py', ADE_CFG, '--cfg-options', 'train_cfg.max_iters=1', option
    ])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(
            osp.join(REPO, 'tools', 'train.py'), run_name='__main__')
    assert exc.value.code == 2
    assert f'--cfg-options: malformed option {option!r}: it has no ' \
        '"=VALUE"; expected KEY=VALUE' in capsys.readouterr().err


def _get_flops_tool():
    path = osp.join(REPO, 'tools', 'analysis', 'get_flops.py')
    spec = importlib.util.spec_from_file_location('get_flops', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('shape', [('-1', ), ('224', '0')])
def test_get_flops_non_positive_shape(shape, capsys):
    with pytest.raises(SystemExit) as exc:
        _get_flops_tool().parse_args([ADE_CFG, '--shape', *shape])
    assert exc.value.code == 2
    assert '--shape must be positive pixel sizes, got ' + ' '.join(shape) \
        in capsys.readouterr().err
    args = _get_flops_tool().parse_args([ADE_CFG, '--shape', '1', '2'])
    assert args.shape == [1, 2]  # the smallest valid shape passes


def test_test_tool_label_out_of_range(run_tool, toy, checkpoints):
    import numpy as np
    from PIL import Image
    path = osp.join(toy, 'ade', 'ADEChallengeData2016', 'annotations',
                    'validation', 'ADE_valid_00000001.png')
    label = np.array(Image.open(path))
    label[:8, :8] = 200  # 199 after reduce_zero_label; 150 classes
    Image.fromarray(label).save(path)
    proc = _test(run_tool, toy, checkpoints['same'])
    assert proc.returncode != 0, proc.output[-3000:]
    assert f'{path}: label value(s) [199] outside [0, 150)' in proc.stderr
    assert 'aAcc:' not in proc.output  # no mIoU without those pixels


def test_test_tool_coco_without_annotations(run_tool, toy, tmp_path):
    import json
    ann_file = osp.join(toy, 'coco', 'annotations', 'instances_val2017.json')
    with open(ann_file) as f:
        data = json.load(f)
    del data['annotations']
    with open(ann_file, 'w') as f:
        json.dump(data, f)
    ckpt = tmp_path / 'any.pth'
    torch.save({'state_dict': {}}, str(ckpt))
    proc = run_tool(
        'tools/test.py',
        osp.join(REPO, 'configs/demo/cascade-mask-rcnn_slak-demo_toy-coco.py'),
        ckpt,
        '--work-dir',
        'work',
        env=dict(MMSLAK_TOY_DATA=toy))
    assert proc.returncode != 0, proc.output[-3000:]
    assert f"{ann_file}: has no ['annotations']" in proc.stderr
