"""Converters: build checkpoints in each source layout, convert them, load
them into the mm models and compare outputs with the source models."""
import argparse
import os.path as osp

import mmdet
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

import mmslak  # noqa: F401
from mmslak.checkpoint import load_checkpoint_file
from mmslak.cli.converters import (mmslak2slak_main, slak2mmpretrain_main,
                                   slak_det2mmdet_main, slak_seg2mmseg_main)
from mmslak.models import SLaK

TINY = dict(depths=[1, 1], dims=[8, 16], kernel_sizes=[7, 5])


def _randomise(module: nn.Module) -> nn.Module:
    """Non-trivial values everywhere (BN stats, gamma, ...), so that a key
    mapped to the wrong place changes the output."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if value.is_floating_point():
                noise = torch.randn(value.shape, generator=gen) * 0.2
                if name.endswith('running_var'):
                    noise = noise.abs() + 0.5
                value.copy_(noise)
    return module.eval()


class ReferenceSLaKClassifier(nn.Module):
    """A classifier whose state dict follows the reference implementation
    (``downsample_layers``, ``stages``, ``norm``, ``head``)."""

    def __init__(self, arch, num_classes=5, width_factor=1.0):
        super().__init__()
        backbone = SLaK(arch=arch, width_factor=width_factor)
        self.downsample_layers = backbone.downsample_layers
        self.stages = backbone.stages
        self.norm = getattr(backbone, f'norm{backbone.num_stages - 1}')
        self.head = nn.Linear(backbone.channels[-1], num_classes)

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean((-2, -1))))


def _mmpretrain_config(tmp_path, arch=TINY, num_classes=5, name='cls.py'):
    path = str(tmp_path / name)
    Config(
        dict(
            default_scope='mmpretrain',
            model=dict(
                type='ImageClassifier',
                backbone=dict(type='SLaK', arch=arch, width_factor=1.0),
                neck=None,
                head=dict(
                    type='LinearClsHead',
                    num_classes=num_classes,
                    in_channels=int(arch['dims'][-1]))))).dump(path)
    return path


def _build(config):
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model).eval()


def test_reference_imagenet_to_mmpretrain_and_back(tmp_path, capsys):
    ref = _randomise(ReferenceSLaKClassifier(TINY))
    ema = _randomise(ReferenceSLaKClassifier(TINY))
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(1.0)
    src = str(tmp_path / 'ref.pth')
    torch.save(
        dict(
            model={
                f'module.{k}': v
                for k, v in ref.state_dict().items()
            },
            model_ema=ema.state_dict(),
            epoch=299,
            args=argparse.Namespace(lr=4e-3, model='SLaK_tiny')), src)
    config = _mmpretrain_config(tmp_path)
    x = torch.randn(2, 3, 32, 32)

    dst = str(tmp_path / 'mm.pth')
    assert slak2mmpretrain_main([src, dst, '--config', config]) == 0
    out = capsys.readouterr().out
    assert 'module.head.* -> head.fc.*  (2 keys)' in out
    assert 'module.* -> backbone.*  (58 keys)' in out
    # the final norm: the last stage's output norm (mmpretrain's naming)
    assert 'module.norm.* -> backbone.norm1.*  (2 keys)' in out
    model = _build(config)
    load_checkpoint(model, dst, strict=True)
    # The reference model runs NCHW; SLaK.forward runs channels_last, so
    # sums are ordered differently: float32 rounding, not mapping errors
    # (a wrong key changes outputs at O(1)).
    tol = dict(rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), ref(x), **tol)

    # --ema takes the EMA weights
    dst_ema = str(tmp_path / 'mm_ema.pth')
    assert slak2mmpretrain_main([src, dst_ema, '--config', config,
                                 '--ema']) == 0
    load_checkpoint(model, dst_ema, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), ema(x), **tol)

    # back to the reference layout: loads strictly into the reference model
    back = str(tmp_path / 'back.pth')
    assert mmslak2slak_main([dst, back, '--config', config]) == 0
    ref2 = ReferenceSLaKClassifier(TINY).eval()
    ref2.load_state_dict(load_checkpoint_file(back)['model'], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ref2(x), ref(x), rtol=0, atol=0)


def test_backbone_only_feeds_a_dense_backbone(tmp_path):
    ref = _randomise(ReferenceSLaKClassifier(TINY))
    src = str(tmp_path / 'ref.pth')
    torch.save(dict(model=ref.state_dict()), src)
    dst = str(tmp_path / 'bb.pth')
    assert slak2mmpretrain_main([
        src, dst, '--config',
        _mmpretrain_config(tmp_path), '--backbone-only'
    ]) == 0
    assert all(
        k.startswith('backbone.')
        for k in load_checkpoint_file(dst)['state_dict'])
    dense = SLaK(
        arch=TINY,
        width_factor=1.0,
        out_indices=(0, 1),
        gap_before_final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.'))
    dense.init_weights()
    dense.eval()
    x = torch.randn(1, 3, 32, 32)
    expected = x
    with torch.no_grad():
        for down, stage in zip(ref.downsample_layers, ref.stages):
            expected = stage(down(expected))
        # stage outputs before the (new) per-stage norms agree
        got = dense.stages[1](
            dense.downsample_layers[1](dense.stages[0](
                dense.downsample_layers[0](x))))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_kernel_size_mismatch_is_refused(tmp_path, capsys):
    # a 31x31 checkpoint into a 51x51 model (one block per stage)
    k31 = dict(
        depths=[1, 1, 1, 1], dims=[8, 8, 8, 8], kernel_sizes=[31, 29, 27, 13])
    k51 = dict(k31, kernel_sizes=[51, 49, 47, 13])
    src = str(tmp_path / 'k31.pth')
    torch.save(dict(model=ReferenceSLaKClassifier(k31).state_dict()), src)
    dst = str(tmp_path / 'out.pth')
    config = _mmpretrain_config(tmp_path, arch=k51)
    assert slak2mmpretrain_main([src, dst, '--config', config]) == 1
    err = capsys.readouterr().err
    assert 'backbone.stages.0.0.large_kernel.LoRA1.conv.weight: ' \
        '(8, 1, 31, 5) vs (8, 1, 51, 5)' in err
    assert 'nothing was written' in err
    assert not osp.exists(dst)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


def test_arch_target_and_leftover_keys(tmp_path, capsys):
    # default target: SLaK-T classifier built from --arch (kernels 51..13)
    sd = ReferenceSLaKClassifier(
        'tiny', num_classes=10, width_factor=1.3).state_dict()
    src = str(tmp_path / 'slak_t.pth')
    torch.save(dict(model=sd), src)
    dst = str(tmp_path / 'slak_t_mm.pth')
    assert slak2mmpretrain_main([src, dst]) == 0
    assert load_checkpoint_file(dst)['state_dict']['head.fc.weight'].shape \
        == (10, 998)
    # a small model's checkpoint is not a tiny one: leftover keys refused
    sd['stages.2.9.gamma'] = torch.zeros(499)
    torch.save(dict(model=sd), src)
    assert slak2mmpretrain_main([src, str(tmp_path / 'x.pth')]) == 1
    assert 'unexpected (not in the model) 1:\n    backbone.stages.2.9.gamma' \
        in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'x.pth')
    # --ema without EMA weights
    assert slak2mmpretrain_main([src, str(tmp_path / 'y.pth'), '--ema']) == 1
    assert "no 'model_ema'" in capsys.readouterr().err


def _seg_config(tmp_path, kernel_sizes=(7, 5)):
    norm_cfg = dict(type='BN', requires_grad=True)
    loss = dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)
    path = str(tmp_path / f'upernet_{kernel_sizes[0]}.py')
    Config(
        dict(
            default_scope='mmseg',
            custom_imports=dict(imports=['mmslak']),
            model=dict(
                type='EncoderDecoder',
                data_preprocessor=dict(type='SegDataPreProcessor'),
                backbone=dict(
                    type='mmpretrain.SLaK',
                    arch=dict(TINY, kernel_sizes=list(kernel_sizes)),
                    width_factor=1.0,
                    out_indices=(0, 1),
                    gap_before_final_norm=False),
                decode_head=dict(
                    type='UPerHead',
                    in_channels=[8, 16],
                    in_index=[0, 1],
                    pool_scales=(1, 2),
                    channels=8,
                    num_classes=4,
                    norm_cfg=norm_cfg,
                    loss_decode=loss),
                auxiliary_head=dict(
                    type='FCNHead',
                    in_channels=16,
                    in_index=1,
                    channels=8,
                    num_convs=1,
                    concat_input=False,
                    num_classes=4,
                    norm_cfg=norm_cfg,
                    loss_decode=loss),
                train_cfg=dict(),
                test_cfg=dict(mode='whole')))).dump(path)
    return path


def test_mmseg0x_upernet_to_mmseg1x(tmp_path, capsys):
    config = _seg_config(tmp_path)
    source = _randomise(_build(config))
    sd = source.state_dict()
    # the key names of mmseg 0.x's UPerHead / FCNHead
    for key in ('decode_head.psp_modules.0.1.conv.weight',
                'decode_head.bottleneck.bn.running_var',
                'decode_head.lateral_convs.0.conv.weight',
                'decode_head.fpn_convs.0.conv.weight',
                'decode_head.fpn_bottleneck.conv.weight',
                'decode_head.conv_seg.weight',
                'auxiliary_head.convs.0.conv.weight',
                'auxiliary_head.conv_seg.bias', 'backbone.norm0.weight'):
        assert key in sd, key
    src = str(tmp_path / 'seg0x.pth')
    torch.save(
        dict(
            meta=dict(
                mmseg_version='0.30.0',
                mmcv_version='1.7.1',
                CLASSES=('wall', 'building', 'sky', 'floor'),
                PALETTE=[[120, 120, 120], [180, 120, 120], [6, 230, 230],
                         [80, 50, 50]],
                iter=160000,
                hook_msgs=dict(last_ckpt='iter_160000.pth'),
                config='# the 0.x config text'),
            state_dict=sd,
            optimizer=dict(state={}, param_groups=[dict(lr=1e-4)])), src)
    dst = str(tmp_path / 'seg1x.pth')
    assert slak_seg2mmseg_main([src, dst, '--config', config]) == 0
    out = capsys.readouterr().out
    assert "meta['CLASSES'] -> meta['dataset_meta']['classes']" in out
    converted = load_checkpoint_file(dst)
    assert 'optimizer' not in converted
    assert converted['meta']['dataset_meta']['classes'][2] == 'sky'
    target = _build(config)
    load_checkpoint(target, dst, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            target._forward(x), source._forward(x), rtol=0, atol=0)
        torch.testing.assert_close(
            target.auxiliary_head(target.extract_feat(x)),
            source.auxiliary_head(source.extract_feat(x)),
            rtol=0,
            atol=0)

    # wrong target architecture: refused, nothing written
    bad = str(tmp_path / 'bad.pth')
    assert slak_seg2mmseg_main(
        [src, bad, '--config',
         _seg_config(tmp_path, (9, 5))]) == 1
    assert 'backbone.stages.0.0.large_kernel.LoRA2.conv.weight: ' \
        '(8, 1, 5, 7) vs (8, 1, 5, 9)' in capsys.readouterr().err
    assert not osp.exists(bad)


def _det_config(tmp_path):
    base = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_', 'models',
        'cascade-mask-rcnn_r50_fpn.py')
    cfg = Config.fromfile(base)
    model = cfg.model
    model.backbone = dict(
        type='mmpretrain.SLaK',
        arch=TINY,
        width_factor=1.0,
        out_indices=(0, 1),
        gap_before_final_norm=False)
    model.neck.update(in_channels=[8, 16], out_channels=16)
    model.rpn_head.update(in_channels=16, feat_channels=16)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = 16
    roi.mask_roi_extractor.out_channels = 16
    for head in roi.bbox_head:  # the paper's 4conv1fc heads with GIoU
        head.update(
            type='Shared4Conv1FCBBoxHead',
            in_channels=16,
            conv_out_channels=16,
            fc_out_channels=32,
            num_classes=3,
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='BN', requires_grad=True))
        head['loss_bbox'] = dict(type='GIoULoss', loss_weight=10.0)
    roi.mask_head.update(in_channels=16, conv_out_channels=16, num_classes=3)
    model.test_cfg.rpn.update(nms_pre=100, max_per_img=50)
    path = str(tmp_path / 'cascade.py')
    Config(
        dict(
            default_scope='mmdet',
            custom_imports=dict(imports=['mmslak']),
            model=model.to_dict())).dump(path)
    return path


def test_mmdet2x_cascade_mask_rcnn_to_mmdet3x(tmp_path, capsys):
    from mmdet.structures import DetDataSample
    config = _det_config(tmp_path)
    source = _randomise(_build(config))
    sd = source.state_dict()
    for key in ('rpn_head.rpn_conv.weight', 'rpn_head.rpn_cls.weight',
                'roi_head.bbox_head.2.shared_convs.3.conv.weight',
                'roi_head.bbox_head.0.shared_fcs.0.weight',
                'roi_head.bbox_head.1.fc_reg.weight',
                'roi_head.mask_head.2.conv_logits.weight',
                'roi_head.mask_head.0.upsample.weight',
                'neck.lateral_convs.0.conv.weight', 'backbone.norm1.bias'):
        assert key in sd, key
    src = str(tmp_path / 'det2x.pth')
    torch.save(
        dict(
            meta=dict(
                mmdet_version='2.25.0',
                CLASSES=('person', 'car', 'dog'),
                epoch=36,
                hook_msgs={}),
            state_dict={
                f'module.{k}': v
                for k, v in sd.items()
            },
            optimizer=dict(state={}, param_groups=[])), src)
    dst = str(tmp_path / 'det3x.pth')
    assert slak_det2mmdet_main([src, dst, '--config', config]) == 0
    converted = load_checkpoint_file(dst)
    assert converted['meta']['dataset_meta'] == dict(
        classes=['person', 'car', 'dog'])
    target = _build(config)
    load_checkpoint(target, dst, strict=True)
    x = torch.randn(1, 3, 64, 64) * 50
    meta = dict(
        img_shape=(64, 64),
        ori_shape=(64, 64),
        pad_shape=(64, 64),
        batch_input_shape=(64, 64),
        scale_factor=(1., 1.))
    with torch.no_grad():
        got = target.predict(x, [DetDataSample(metainfo=meta)])[0]
        want = source.predict(x, [DetDataSample(metainfo=meta)])[0]
    assert len(want.pred_instances) > 0
    for field in ('bboxes', 'scores', 'labels', 'masks'):
        torch.testing.assert_close(
            got.pred_instances.get(field),
            want.pred_instances.get(field),
            rtol=0,
            atol=0)

    # leftover keys are refused by name
    sd['roi_head.bbox_head.3.fc_cls.weight'] = torch.zeros(4, 32)
    torch.save(dict(state_dict=sd), src)
    assert slak_det2mmdet_main(
        [src, str(tmp_path / 'bad.pth'), '--config', config]) == 1
    assert 'roi_head.bbox_head.3.fc_cls.weight' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'bad.pth')


def test_reverse_refuses_foreign_keys(tmp_path, capsys):
    config = _seg_config(tmp_path)
    src = str(tmp_path / 'seg.pth')
    torch.save(dict(state_dict=_build(config).state_dict()), src)
    dst = str(tmp_path / 'ref.pth')
    assert mmslak2slak_main([src, dst, '--config', config]) == 1
    assert 'decode_head.' in capsys.readouterr().err
    assert not osp.exists(dst)


def test_missing_installed_config_is_a_clear_error():
    from mmslak.cli.converters import _target_model
    with pytest.raises(FileNotFoundError, match='pass --config'):
        _target_model('mmslak::upernet/no-such-config.py')


def _own_checkpoint_with_ema(tmp_path, config):
    """One of our ImageNet checkpoints as mmengine's EMAHook writes it (its
    own before_save_checkpoint swaps the EMA into `state_dict`); returns the
    path, the trained and the EMA state dicts (copies taken before saving)."""
    from types import SimpleNamespace

    from mmengine.hooks import EMAHook
    model = _randomise(_build(config))
    runner = SimpleNamespace(model=model, iter=0, epoch=0)
    hook = EMAHook(momentum=0.5)
    hook.before_run(runner)
    hook.after_train_iter(runner, 0)  # the first update copies the model
    with torch.no_grad():  # a "training step": the EMA now lags behind
        for p in model.parameters():
            p.add_(1.0)
    hook.after_train_iter(runner, 1)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = {
        k: v.clone()
        for k, v in hook.ema_model.module.state_dict().items()
    }
    assert any(not torch.equal(trained[k], averaged[k]) for k in trained)
    checkpoint = dict(state_dict=model.state_dict(), meta=dict(epoch=3))
    hook.before_save_checkpoint(runner, checkpoint)
    path = str(tmp_path / 'best_accuracy_top1.pth')
    torch.save(checkpoint, path)
    return path, trained, averaged


def test_own_checkpoint_extraction_takes_trained_weights_unless_ema(
        tmp_path, capsys):
    config = _mmpretrain_config(tmp_path)
    src, trained, averaged = _own_checkpoint_with_ema(tmp_path, config)
    for flags, expected, says in (([], trained, 'non-EMA'),
                                  (['--ema'], averaged, 'the EMA weights')):
        dst = str(tmp_path / f'backbone{len(flags)}.pth')
        assert slak2mmpretrain_main(
            [src, dst, '--config', config, '--backbone-only'] + flags) == 0
        assert says in capsys.readouterr().out
        got = load_checkpoint_file(dst)['state_dict']
        want = {k: v for k, v in expected.items() if k.startswith('backbone.')}
        assert sorted(got) == sorted(want)
        for key, value in want.items():
            assert torch.equal(got[key], value), key
    # to the reference layout: `model` trained, `model_ema` the average
    back = str(tmp_path / 'ref.pth')
    assert mmslak2slak_main([src, back, '--config', config]) == 0
    ref = load_checkpoint_file(back)
    assert torch.equal(ref['model']['head.weight'], trained['head.fc.weight'])
    assert torch.equal(ref['model_ema']['head.weight'],
                       averaged['head.fc.weight'])
    assert torch.equal(ref['model']['norm.weight'],
                       trained['backbone.norm1.weight'])
