import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from macs_oracle import conv_linear_macs
from mmengine.registry import MODELS, init_default_scope

from mmslak.analysis import (TensorForward, count_complexity,
                             densities_assumed, densities_from_masks,
                             densities_from_weights, dummy_inputs)
from mmslak.apis import build_model, drop_pretrained_init, init_model

REPO = Path(__file__).resolve().parents[2]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name}', REPO / 'tools' / 'analysis' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ConvLinear(nn.Module):
    """conv 3->4 (3x3, pad 1) on 8x8, flatten, linear 256->10."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


# Hand-computed: conv MACs = out positions (4 * 8 * 8) x taps (3 * 3 * 3),
# linear MACs = 256 * 10; params = weights + biases.
CONV_MACS = 4 * 8 * 8 * 3 * 3 * 3  # 6912
FC_MACS = 256 * 10  # 2560
CONV_W, CONV_B, FC_W, FC_B = 4 * 3 * 3 * 3, 4, 2560, 10


def test_dense_counts_match_hand_computation():
    model = ConvLinear()
    result = count_complexity(model, torch.randn(1, 3, 8, 8))
    assert result['flops'] == CONV_MACS + FC_MACS
    assert result['params'] == CONV_W + CONV_B + FC_W + FC_B
    assert result['sparse_flops'] == result['flops']
    assert result['nonzero_params'] == result['params']


def test_uniform_density_scales_weights_and_macs():
    model = ConvLinear()
    dens = densities_assumed(model, 0.5)
    assert dens == {'conv': 0.5, 'fc': 0.5}
    result = count_complexity(model, torch.randn(1, 3, 8, 8), dens)
    assert result['sparse_flops'] == (CONV_MACS + FC_MACS) // 2
    # biases stay dense
    assert result['nonzero_params'] == (CONV_W + FC_W) // 2 + CONV_B + FC_B
    assert result['layers']['conv'] == dict(
        density=0.5, params=CONV_W, flops=CONV_MACS)
    only_conv = densities_assumed(model, 0.25, prefix='conv')
    assert only_conv == {'conv': 0.25}
    with pytest.raises(ValueError, match='density'):
        densities_assumed(model, 0)


def test_densities_from_weights_and_masks():
    model = ConvLinear()
    with torch.no_grad():
        model.conv.weight.view(-1)[:CONV_W // 4] = 0
    dens = densities_from_weights(model)
    assert dens == {'conv': 0.75, 'fc': 1.0}
    result = count_complexity(model, torch.randn(1, 3, 8, 8), dens)
    assert result['sparse_flops'] == CONV_MACS * 3 // 4 + FC_MACS
    assert result['nonzero_params'] == \
        sum(int((p != 0).sum()) for p in model.parameters())

    mask = torch.zeros(10, 256, dtype=torch.bool)
    mask[:, :64] = True
    assert densities_from_masks(model, {'fc.weight': mask}) == {'fc': 0.25}
    with pytest.raises(ValueError, match='shape'):
        densities_from_masks(model, {'fc.weight': mask[:, :10]})
    with pytest.raises(KeyError, match='no conv/linear'):
        densities_from_masks(model, {'nope.weight': mask})
    with pytest.raises(KeyError, match='not a module'):
        count_complexity(model, torch.randn(1, 3, 8, 8), {'nope': 0.5})


def _slak_classifier():
    init_default_scope('mmpretrain')
    return MODELS.build(
        dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(type='mmpretrain.SLaK', arch='tiny'),
            head=dict(
                type='mmpretrain.LinearClsHead',
                num_classes=1000,
                in_channels=998)))


def test_slak_tiny_paper_counts():
    model = _slak_classifier().eval()
    inputs, kwargs = dummy_inputs(model, (224, 224))
    assert kwargs == dict(data_samples=None, mode='tensor')
    with TensorForward(model, kwargs):
        result = count_complexity(model, inputs, densities_assumed(model, 0.6))
    # Reference architecture counts (PAPER_FACTS): dense 50,703,838 and
    # 30,473,228 non-zero at density 0.6 on every 2-D/4-D weight.
    assert result['params'] == 50_703_838
    assert result['nonzero_params'] == 30_473_228
    layers = result['layers']
    # Full (uncropped) kernels are counted, even where the fast op crops:
    # stage 1 at 56x56 (K=51), stage 3 at 14x14 (K=47 > 2 * 14 - 1).
    for stage, size, k, c in [(0, 56, 51, 124), (2, 14, 47, 499)]:
        prefix = f'backbone.stages.{stage}.0.large_kernel.'
        assert layers[prefix + 'LoRA1.conv']['flops'] == c * size**2 * k * 5
        assert layers[prefix + 'LoRA2.conv']['flops'] == c * size**2 * 5 * k
        assert layers[prefix + 'small_conv.conv']['flops'] == \
            c * size**2 * 25
    assert layers['head.fc']['flops'] == 998 * 1000
    # about 8.74 GMACs dense (ConvNeXt-T: 4.47)
    assert result['flops'] == pytest.approx(8.74e9, rel=2e-3)
    # sparse: every conv/linear MAC (counted by hand from the architecture)
    # scaled by 0.6, the rest (norms, activations) dense
    weight_macs = _slak_tiny_weight_macs()
    assert sum(v['flops'] for v in layers.values()) == weight_macs
    assert result['sparse_flops'] == round(result['flops'] - 0.4 * weight_macs)


def _slak_tiny_weight_macs() -> int:
    """Conv and linear MACs of SLaK-T (width 1.3) + 1000-class head at 224,
    by hand: stem 4x4/4, downsamples 2x2/2, per block the Kx5, 5xK and 5x5
    depthwise kernels and the two 4x pointwise linears."""
    dims = [int(d * 1.3) for d in (96, 192, 384, 768)]
    macs = 56 * 56 * dims[0] * 3 * 16
    for i, (depth, size, k) in enumerate(
            zip((3, 3, 9, 3), (56, 28, 14, 7), (51, 49, 47, 13))):
        c, hw = dims[i], size * size
        if i:
            macs += hw * c * dims[i - 1] * 4
        macs += depth * (c * hw * (2 * k * 5 + 25) + 2 * hw * c * 4 * c)
    return macs + dims[3] * 1000


def test_model_restored_after_tensor_forward():
    model = _slak_classifier()
    _, kwargs = dummy_inputs(model, (32, 32))
    with TensorForward(model, kwargs):
        assert 'forward' in model.__dict__
    assert 'forward' not in model.__dict__


def test_drop_pretrained_init():
    cfg = dict(
        backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth')),
        head=dict(init_cfg=[
            dict(type='Normal', std=0.01),
            dict(type='Pretrained', checkpoint='y')
        ]))
    assert drop_pretrained_init(cfg) == 2
    assert cfg['backbone']['init_cfg'] is None
    assert cfg['head']['init_cfg'] == [dict(type='Normal', std=0.01)]


TINY_BACKBONE = ("dict(type='mmpretrain.SLaK', arch=dict(depths=[1, 1, 1, 1]"
                 ", dims=[8, 16, 24, 32]), width_factor=1.0, "
                 'kernel_sizes=(13, 11, 9, 7), out_indices=(0, 1, 2, 3), '
                 'gap_before_final_norm=False, '
                 "init_cfg=dict(type='Pretrained', checkpoint='missing.pth'"
                 ", prefix='backbone.'))")


def test_get_flops_cli_segmentation(tmp_path):
    cfg = tmp_path / 'tiny_upernet.py'
    cfg.write_text(
        "_base_ = ['mmseg::_base_/models/upernet_convnext.py']\n"
        "custom_imports = dict(imports=['mmslak'])\n"
        "norm_cfg = dict(type='SyncBN', requires_grad=True)\n"
        f'model = dict(backbone=dict(_delete_=True, **{TINY_BACKBONE}),\n'
        '    decode_head=dict(in_channels=[8, 16, 24, 32], channels=16,\n'
        '                     num_classes=5),\n'
        '    auxiliary_head=dict(in_channels=24, channels=8, '
        'num_classes=5))\n')
    out = tmp_path / 'r.json'
    tool = load_tool('get_flops')
    summary = tool.main([
        str(cfg), '--shape', '64', '96', '--density', '0.6', '--json',
        str(out)
    ])
    assert summary == json.loads(out.read_text())
    assert summary['task'] == 'mmseg'
    assert summary['shape'] == [64, 96]
    assert 'backbone.' in summary['density_source']
    # built again independently: backbone-only density, no auxiliary head
    model = build_model(str(cfg))
    assert model.auxiliary_head is None
    dense = sum(p.numel() for p in model.parameters())
    backbone_w = sum(m.weight.numel() for m in model.backbone.modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert summary['params'] == dense
    assert summary['nonzero_params'] == round(dense - 0.4 * backbone_w)
    # exact: the backbone's conv/linear MACs (forward hooks) at 0.6
    backbone_macs = conv_linear_macs(model, (64, 96), prefix='backbone.')
    assert backbone_macs > 0
    assert summary['sparse_flops'] == round(summary['flops'] -
                                            0.4 * backbone_macs)


def test_get_flops_cli_detection_and_weights(tmp_path):
    cfg = tmp_path / 'tiny_frcnn.py'
    cfg.write_text(
        "_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']\n"
        "custom_imports = dict(imports=['mmslak'])\n"
        f'model = dict(backbone=dict(_delete_=True, **{TINY_BACKBONE}),\n'
        '    neck=dict(in_channels=[8, 16, 24, 32], out_channels=16),\n'
        '    rpn_head=dict(in_channels=16, feat_channels=16),\n'
        '    roi_head=dict(bbox_roi_extractor=dict(out_channels=16),\n'
        '        bbox_head=dict(in_channels=16, fc_out_channels=32,\n'
        '                       num_classes=3)))\n')
    # a "pruned" checkpoint: half of the first stem conv's weights zeroed
    model = build_model(str(cfg))
    state = model.state_dict()
    stem = 'backbone.downsample_layers.0.0.weight'
    state[stem].view(-1)[:state[stem].numel() // 2] = 0
    ckpt = tmp_path / 'pruned.pth'
    torch.save(dict(state_dict=state), ckpt)
    tool = load_tool('get_flops')
    summary = tool.main(
        [str(cfg), '--shape', '96', '128', '--checkpoint',
         str(ckpt)])
    assert summary['task'] == 'mmdet'
    assert summary['density_source'].startswith('non-zero weights')
    # only the stem lost weights: half its weights and half its MACs
    stem_w = state[stem].numel()
    stem_macs = stem_w * (96 // 4) * (128 // 4)
    assert summary['params'] - summary['nonzero_params'] == stem_w // 2
    assert summary['flops'] - summary['sparse_flops'] == stem_macs // 2


TINY_CLASSIFIER = (
    "custom_imports = dict(imports=['mmslak'])\n"
    "model = dict(type='mmpretrain.ImageClassifier', backbone=dict(\n"
    "    type='mmpretrain.SLaK', arch=dict(depths=[1, 1, 1, 1],\n"
    '    dims=[8, 8, 8, 8]), width_factor=1.0, kernel_sizes=(13, 11, 9, 7)),\n'
    "    head=dict(type='mmpretrain.LinearClsHead', num_classes=10,\n"
    '              in_channels=8))\n')


def test_get_flops_cli_masks(tmp_path):
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(TINY_CLASSIFIER)
    model = build_model(str(cfg))
    name = 'backbone.stages.0.0.large_kernel.LoRA1.conv'
    weight = dict(model.named_modules())[name].weight
    mask = torch.zeros_like(weight, dtype=torch.bool)
    mask[..., :2, :] = True  # 2 of 13 rows kept
    ckpt = tmp_path / 'sparse.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            sparsity=dict(masks={name + '.weight': mask})), ckpt)
    tool = load_tool('get_flops')
    summary = tool.main([str(cfg), '--shape', '64', '--checkpoint', str(ckpt)])
    assert summary['density_source'].startswith('sparse-training masks')
    assert summary['params'] - summary['nonzero_params'] == \
        weight.numel() * 11 // 13
    macs = weight.numel() * 16 * 16  # stage 1 map: 64 / 4
    assert summary['flops'] - summary['sparse_flops'] == macs * 11 // 13


# get_flops.py counts a config's SparseTrainingHook density with no flag;
# --density overrides it; a hook keeping a checkpoint's zeros sets none.
FLOPS_CONFIG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmslak'])
model = dict(
    type='ImageClassifier',
    backbone=dict(type='SLaK', arch=dict(depths=[1, 1, 1, 1],
                  dims=[8, 16, 24, 32]), width_factor=1.0,
                  kernel_sizes=(13, 11, 9, 7)),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=32))
custom_hooks = [dict(type='SparseTrainingHook', {hook})]
"""


@pytest.mark.parametrize('hook,flags,density', [
    ("density=0.5, init='snip'", [], 0.5),
    ("density=0.5, init='snip'", ['--density', '0.8'], 0.8),
    ("init='checkpoint', dynamic=False", [], None),
])
def test_get_flops_density_from_config_hook(tmp_path, hook, flags, density):
    cfg = tmp_path / 'cls.py'
    cfg.write_text(FLOPS_CONFIG.format(hook=hook))
    summary = load_tool('get_flops').main([str(cfg), '--shape', '64', *flags])
    model = init_model(str(cfg))
    dense = sum(p.numel() for p in model.parameters())
    weights = sum(m.weight.numel() for m in model.modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert summary['params'] == dense
    if density is None:
        assert summary['density_source'] == 'none (dense)'
        assert 'nonzero_params' not in summary or \
            summary['nonzero_params'] == dense
        return
    assert str(density) in summary['density_source']
    assert summary['nonzero_params'] == round(dense - (1 - density) * weights)
    # exact: every conv/linear MAC (forward hooks) scaled by the density
    macs = conv_linear_macs(model, (64, 64))
    assert summary['sparse_flops'] == round(summary['flops'] -
                                            (1 - density) * macs)
