import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmslak.checkpoint import slak_to_mmpretrain
from mmslak.models import SLaK

# A narrow arch for fast tests; kernels still larger than some feature maps.
TINY_ARCH = dict(depths=[1, 1, 2, 1], channels=[8, 16, 24, 32])
TINY = dict(
    arch=TINY_ARCH,
    width_factor=1.0,
    kernel_sizes=(13, 11, 9, 5),
    small_kernel=3)

ARCH_TABLE = {  # the paper's table (PAPER_FACTS.md), independent of the code
    'tiny': ([3, 3, 9, 3], [96, 192, 384, 768]),
    'small': ([3, 3, 27, 3], [96, 192, 384, 768]),
    'base': ([3, 3, 27, 3], [128, 256, 512, 1024]),
    'large': ([3, 3, 27, 3], [192, 384, 768, 1536]),
}
PAPER_KERNELS = (51, 49, 47, 13)  # every arch (paper Sec. 4, reference)
# Counted on the reference implementation (backbone without head and final
# norm), see PAPER_FACTS.md.
REFERENCE_COUNTS = {
    'tiny': 49_702_842,
    'small': 90_130_824,
    'base': 156_616_130,
    'large': 344_623_526,
}


def expected_param_count(depths,
                         dims,
                         kernels=(51, 49, 47, 13),
                         small=5,
                         width=1.3,
                         in_chans=3):
    """Dense parameter count of the backbone from the architecture alone
    (stem, downsampling, blocks; no final norm, no head)."""
    dims = [int(d * width) for d in dims]
    total = in_chans * dims[0] * 16 + dims[0] + 2 * dims[0]  # stem conv + LN
    for i in range(1, len(dims)):
        total += 2 * dims[i - 1] + dims[i - 1] * dims[i] * 4 + dims[i]
    for depth, c, k in zip(depths, dims, kernels):
        large_kernel = 2 * c * k * small + c * small * small + 3 * 2 * c
        mlp = (c * 4 * c + 4 * c) + (4 * c * c + c)
        total += depth * (large_kernel + 2 * c + mlp + c)  # + norm + gamma
    return total


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_dense_parameter_count_matches_reference(arch):
    model = SLaK(
        arch=arch,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        init_cfg=None)
    count = sum(p.numel() for name, p in model.named_parameters()
                if not name.startswith('norm'))
    assert count == expected_param_count(*ARCH_TABLE[arch])
    assert count == REFERENCE_COUNTS[arch]
    assert model.channels == [int(d * 1.3) for d in ARCH_TABLE[arch][1]]


def test_arch_aliases_and_dict():
    assert SLaK(arch='t', init_cfg=None).depths == [3, 3, 9, 3]
    for arch in ARCH_TABLE:  # kernel sizes come from the arch table
        assert SLaK(arch=arch, init_cfg=None).kernel_sizes == PAPER_KERNELS
    assert SLaK(
        arch='tiny', kernel_sizes=(31, 29, 27, 13),
        init_cfg=None).kernel_sizes == (31, 29, 27, 13)
    model = SLaK(**TINY)
    assert model.channels == [8, 16, 24, 32]
    assert model.kernel_sizes == (13, 11, 9, 5)
    model = SLaK(
        arch=dict(TINY_ARCH, kernel_sizes=[7, 7, 5, 5]),
        width_factor=1.0,
        small_kernel=3)
    assert model.kernel_sizes == (7, 7, 5, 5)


@pytest.mark.parametrize('size', [(224, 224), (225, 225), (97, 130), (33, 33)])
@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (3, ), (-1, ), (1, 2)])
def test_dense_prediction_shapes(size, out_indices):
    model = SLaK(
        **TINY, out_indices=out_indices, gap_before_final_norm=False).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        outs = model(x)
    assert isinstance(outs, tuple)
    indices = sorted(i % 4 for i in out_indices)
    assert len(outs) == len(indices)
    h, w = size[0] // 4, size[1] // 4
    for i, out in zip(indices, outs):
        hi, wi = h, w
        for _ in range(i):
            hi, wi = hi // 2, wi // 2
        assert out.shape == (2, model.channels[i], hi, wi)
        assert hasattr(model, f'norm{i}')


def test_classification_shapes_and_norm_names():
    model = SLaK(**TINY).eval()
    norms = [n for n, _ in model.named_children() if n.startswith('norm')]
    assert norms == ['norm3']  # mmpretrain's ConvNeXt naming, no special
    with torch.no_grad():
        (out, ) = model(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 32)
    model = SLaK(**TINY, out_indices=(2, 3)).eval()
    norms = [n for n, _ in model.named_children() if n.startswith('norm')]
    assert norms == ['norm2', 'norm3']
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape for o in outs] == [(1, 24), (1, 32)]


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_every_arch_runs(arch):
    model = SLaK(
        arch=arch,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        init_cfg=None).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    dims = [int(d * 1.3) for d in ARCH_TABLE[arch][1]]
    assert [o.shape for o in outs] == [(1, dims[0], 16, 16),
                                       (1, dims[1], 8, 8), (1, dims[2], 4, 4),
                                       (1, dims[3], 2, 2)]


def test_slak_tiny_224_forward():
    model = SLaK(
        arch='tiny', out_indices=(0, 1, 2, 3), gap_before_final_norm=False)
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape)
            for o in outs] == [(1, 124, 56, 56), (1, 249, 28, 28),
                               (1, 499, 14, 14), (1, 998, 7, 7)]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('with_cp', [False, True])
def test_slak_tiny_traces_as_one_graph(with_cp):
    """Issue 22 item 6 on the real SLaK-T (training mode, drop path,
    gradient checkpointing or not): torch.compile sees one graph and no
    break (the op's custom ops have fake implementations; numerics of the
    compiled op are checked in tests/ops)."""
    import torch._dynamo
    model = SLaK(
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        with_cp=with_cp)
    model.train()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(torch.randn(1, 3, 64, 64))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"Unknown SLaK arch 'huge'.*tiny"),
    (dict(arch=dict(depths=[1, 1])), 'channels'),
    (dict(arch=dict(depths=[1], channels=[8], bogus=1)), 'bogus'),
    (dict(arch=dict(depths=[1], channels=[8])), 'kernel_sizes'),
    (dict(kernel_sizes=(51, 48, 47, 13)), r'kernel_sizes\[1\].*odd'),
    (dict(kernel_sizes=(0, 49, 47, 13)), r'kernel_sizes\[0\]'),
    (dict(kernel_sizes=(51, 49, 47)), '3 entries but the arch has 4'),
    (dict(small_kernel=4), 'small_kernel'),
    (dict(out_indices=(4, )), 'out_indices entry 4 is out of range'),
    (dict(out_indices=(-5, )), 'out of range'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(frozen_stages=-2), 'frozen_stages'),
])
def test_bad_arguments(kwargs, match):
    cfg = dict(arch='tiny', init_cfg=None)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SLaK(**cfg)


def test_wrong_input_channels():
    model = SLaK(**TINY)
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\).*\(1, 4, 32, 32\)'):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match='expects'):
        model(torch.randn(3, 32, 32))
    assert SLaK(**TINY, in_channels=1).eval()(torch.randn(1, 1, 32, 32))


# ----------------------------------------------------------- train state
@pytest.mark.parametrize('frozen_stages', [1, 2, 4])
def test_frozen_stages(frozen_stages):
    model = SLaK(
        **TINY,
        frozen_stages=frozen_stages,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False)
    model.init_weights()
    assert model.train() is model
    before = copy.deepcopy(model.state_dict())
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad]
        or [nn.Parameter(torch.zeros(1))],
        lr=0.1,
        weight_decay=0.5)
    for _ in range(2):
        outs = model(torch.randn(2, 3, 64, 64))
        sum(o.square().mean() for o in outs).backward()
        optim.step()
        optim.zero_grad()
    after = model.state_dict()
    for i in range(4):
        frozen = i < frozen_stages
        for module in (model.downsample_layers[i], model.stages[i]):
            for m in module.modules():
                assert m.training is not frozen
            for p in module.parameters():
                assert p.requires_grad is not frozen
        prefixes = (f'downsample_layers.{i}.', f'stages.{i}.')
        for key, value in before.items():
            if key.startswith(prefixes) and 'num_batches' not in key:
                same = torch.equal(value, after[key])
                # Frozen weights and BN statistics never move; trained ones
                # do (BN stats of trained stages too).
                assert same is frozen, key


def test_norm_eval_keeps_bn_in_eval():
    model = SLaK(**TINY, norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    stats = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(bns[0].running_mean, stats)
    assert model.stages[0][0].norm.training  # LayerNorms untouched
    model = SLaK(**TINY).train()
    assert all(m.training for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))


# ----------------------------------------------------------------- deploy
def test_deploy_equivalence_whole_backbone():
    model = SLaK(
        arch=TINY_ARCH,
        width_factor=1.0,
        kernel_sizes=(31, 15, 9, 5),
        small_kernel=5,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        layer_scale_init_value=1.0)
    model.init_weights()
    model.train()
    with torch.no_grad():  # populate BN statistics
        for _ in range(3):
            model(torch.randn(4, 3, 96, 80))
    model.eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    for a, b in zip(after, before):
        rel = (a - b).abs().max() / b.abs().max()
        assert rel < 1e-5, rel
    deployed = SLaK(
        arch=TINY_ARCH,
        width_factor=1.0,
        kernel_sizes=(31, 15, 9, 5),
        small_kernel=5,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        deploy=True)
    deployed.load_state_dict(model.state_dict())  # strict


# ---------------------------------------------------- precision / devices
def test_bf16_autocast_on_cpu():
    model = SLaK(
        **TINY, out_indices=(0, 3), gap_before_final_norm=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert o.shape == r.shape and torch.isfinite(o).all()
        torch.testing.assert_close(o.float(), r, rtol=0.1, atol=0.1)


def test_with_cp_same_gradients():
    torch.manual_seed(1)
    a = SLaK(**TINY, drop_path_rate=0.)
    b = SLaK(**TINY, with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    for model in (a, b):
        model(x)[0].sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


@pytest.mark.cuda
def test_cuda_matches_cpu(monkeypatch):
    # cuDNN's convolutions and the GEMMs default to TF32 (~1e-3): exact
    # fp32 for the 1e-4 comparison (monkeypatch restores the flags)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    model = SLaK(
        **TINY, out_indices=(0, 1, 2, 3), gap_before_final_norm=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        outs = model.cuda()(x.cuda())
        with torch.autocast('cuda', dtype=torch.float16):
            half = model(x.cuda())
    for o, h, r in zip(outs, half, ref):
        torch.testing.assert_close(o.cpu(), r, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(h.float().cpu(), r, rtol=0.05, atol=0.05)


# --------------------------------------------------- reference layout
def reference_state_dict(depths, dims, kernels, small, num_classes=10):
    """A state dict with the reference implementation's key names and
    shapes, written from the paper's description (not from our modules)."""
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    sd = {}
    sd['downsample_layers.0.0.weight'] = rnd(dims[0], 3, 4, 4)
    sd['downsample_layers.0.0.bias'] = rnd(dims[0])
    sd['downsample_layers.0.1.weight'] = 1 + rnd(dims[0])
    sd['downsample_layers.0.1.bias'] = rnd(dims[0])
    for i in range(1, len(dims)):
        sd[f'downsample_layers.{i}.0.weight'] = 1 + rnd(dims[i - 1])
        sd[f'downsample_layers.{i}.0.bias'] = rnd(dims[i - 1])
        sd[f'downsample_layers.{i}.1.weight'] = rnd(dims[i], dims[i - 1], 2, 2)
        sd[f'downsample_layers.{i}.1.bias'] = rnd(dims[i])
    for i, (depth, c, k) in enumerate(zip(depths, dims, kernels)):
        for j in range(depth):
            p = f'stages.{i}.{j}.'
            for branch, shape in (('LoRA1', (k, small)), ('LoRA2', (small, k)),
                                  ('small_conv', (small, small))):
                q = f'{p}large_kernel.{branch}.'
                sd[q + 'conv.weight'] = rnd(c, 1, *shape)
                sd[q + 'bn.weight'] = 1 + rnd(c)
                sd[q + 'bn.bias'] = rnd(c)
                sd[q + 'bn.running_mean'] = rnd(c)
                sd[q + 'bn.running_var'] = 1 + rnd(c).abs()
                sd[q + 'bn.num_batches_tracked'] = torch.tensor(7)
            sd[p + 'norm.weight'] = 1 + rnd(c)
            sd[p + 'norm.bias'] = rnd(c)
            sd[p + 'pwconv1.weight'] = rnd(4 * c, c)
            sd[p + 'pwconv1.bias'] = rnd(4 * c)
            sd[p + 'pwconv2.weight'] = rnd(c, 4 * c)
            sd[p + 'pwconv2.bias'] = rnd(c)
            sd[p + 'gamma'] = 1 + rnd(c)
    sd['norm.weight'] = 1 + rnd(dims[-1])
    sd['norm.bias'] = rnd(dims[-1])
    sd['head.weight'] = rnd(num_classes, dims[-1])
    sd['head.bias'] = rnd(num_classes)
    return sd


def reference_forward(sd, x, depths, eps_ln=1e-6, eps_bn=1e-5):
    """The paper's forward pass written functionally over a reference-layout
    state dict: returns the pooled, normalised feature (before the head)."""

    def ln_channels_first(t, w, b):
        return F.layer_norm(t.permute(0, 2, 3, 1), w.shape, w, b,
                            eps_ln).permute(0, 3, 1, 2)

    for i, depth in enumerate(depths):
        d = f'downsample_layers.{i}.'
        if i == 0:
            x = F.conv2d(x, sd[d + '0.weight'], sd[d + '0.bias'], stride=4)
            x = ln_channels_first(x, sd[d + '1.weight'], sd[d + '1.bias'])
        else:
            x = ln_channels_first(x, sd[d + '0.weight'], sd[d + '0.bias'])
            x = F.conv2d(x, sd[d + '1.weight'], sd[d + '1.bias'], stride=2)
        for j in range(depth):
            p = f'stages.{i}.{j}.'
            y = 0
            for branch in ('LoRA1', 'LoRA2', 'small_conv'):
                q = f'{p}large_kernel.{branch}.'
                w = sd[q + 'conv.weight']
                z = F.conv2d(
                    x,
                    w,
                    padding=(w.shape[2] // 2, w.shape[3] // 2),
                    groups=w.shape[0])
                y = y + F.batch_norm(
                    z, sd[q + 'bn.running_mean'], sd[q + 'bn.running_var'],
                    sd[q + 'bn.weight'], sd[q + 'bn.bias'], False, 0., eps_bn)
            y = y.permute(0, 2, 3, 1)
            y = F.layer_norm(y, y.shape[-1:], sd[p + 'norm.weight'],
                             sd[p + 'norm.bias'], eps_ln)
            y = F.linear(
                F.gelu(
                    F.linear(y, sd[p + 'pwconv1.weight'],
                             sd[p + 'pwconv1.bias'])),
                sd[p + 'pwconv2.weight'], sd[p + 'pwconv2.bias'])
            x = x + (sd[p + 'gamma'] * y).permute(0, 3, 1, 2)
    pooled = x.mean(dim=(-2, -1))
    return F.layer_norm(pooled, pooled.shape[-1:], sd['norm.weight'],
                        sd['norm.bias'], eps_ln)


def test_reference_checkpoint_converts_and_loads_strictly():
    """A reference-layout checkpoint goes through the converter (its final
    ``norm.`` becomes ``norm3.``), loads with no missing or unexpected key
    and computes the reference's forward."""
    depths, dims, kernels = [1, 1, 2, 1], [8, 16, 24, 32], (13, 11, 9, 5)
    sd = reference_state_dict(depths, dims, kernels, small=3)
    converted, _ = slak_to_mmpretrain(dict(model=sd), backbone_only=True)
    backbone_sd = {
        k[len('backbone.'):]: v
        for k, v in converted['state_dict'].items()
    }
    model = SLaK(
        arch=dict(depths=depths, channels=dims),
        width_factor=1.0,
        kernel_sizes=kernels,
        small_kernel=3)
    result = model.load_state_dict(backbone_sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        (out, ) = model(x)
        expected = reference_forward(sd, x, depths)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_reference_keys_of_full_size_tiny():
    """SLaK-T's own keys and shapes are exactly the reference's, its final
    ``norm.`` named ``norm3.`` (the one rename)."""
    depths, dims = ARCH_TABLE['tiny']
    dims = [int(d * 1.3) for d in dims]
    ref = reference_state_dict(depths, dims, PAPER_KERNELS, small=5)
    ref = {
        ('norm3.' + k[len('norm.'):] if k.startswith('norm.') else k): v.shape
        for k, v in ref.items() if not k.startswith('head.')
    }
    ours = {k: v.shape for k, v in SLaK(arch='tiny').state_dict().items()}
    assert ours == ref


# --------------------------------------------------------- layer depth
def test_get_layer_depth():
    model = SLaK(arch='tiny', init_cfg=None)
    f = model.get_layer_depth
    assert f('backbone.downsample_layers.0.0.weight', 'backbone.') == (0, 8)
    assert f('backbone.stages.0.2.gamma', 'backbone.') == (1, 8)
    assert f('backbone.downsample_layers.1.1.weight', 'backbone.') == (2, 8)
    assert f('backbone.stages.1.0.pwconv1.weight', 'backbone.') == (2, 8)
    assert f('backbone.stages.2.0.gamma', 'backbone.') == (3, 8)
    assert f('backbone.stages.2.8.gamma', 'backbone.') == (5, 8)
    assert f('backbone.stages.3.0.gamma', 'backbone.') == (6, 8)
    assert f('backbone.norm3.weight', 'backbone.') == (7, 8)
    assert f('head.fc.weight', 'backbone.') == (7, 8)
    small = SLaK(arch='small', init_cfg=None)
    assert small.get_layer_depth('stages.2.26.gamma') == (11, 14)


# --------------------------------------------------------------- registry
def test_build_from_mmpretrain_mmseg_and_mmdet_registries():
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as CLS_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = dict(
        type='mmpretrain.SLaK',
        **TINY,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False)
    for scope, registry in (('mmpretrain', CLS_MODELS), ('mmseg', SEG_MODELS),
                            ('mmdet', DET_MODELS)):
        with DefaultScope.overwrite_default_scope(scope):
            model = registry.build(copy.deepcopy(cfg))
        assert isinstance(model, SLaK), scope
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # not a
        # default scope left by an earlier test's Runner
        assert isinstance(CLS_MODELS.build(dict(type='SLaK', **TINY)), SLaK)


def test_mmseg_encoder_decoder_with_slak_backbone():
    from mmengine.registry import DefaultScope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.structures import SegDataSample

    model_cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(64, 64)),
        backbone=dict(
            type='mmpretrain.SLaK',
            **TINY,
            out_indices=(0, 1, 2, 3),
            gap_before_final_norm=False),
        decode_head=dict(
            type='UPerHead',
            in_channels=[8, 16, 24, 32],
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2),
            channels=16,
            num_classes=4,
            norm_cfg=dict(type='BN'),
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(model_cfg)
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 64, 64)))
    sample.set_metainfo(
        dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
    data = dict(
        inputs=[torch.randint(0, 255, (3, 64, 64)).float()] * 2,
        data_samples=[sample, copy.deepcopy(sample)])
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])


def test_pretrained_init_cfg_with_prefix(tmp_path):
    source = SLaK(**TINY)
    source.init_weights()
    ckpt = tmp_path / 'classifier.pth'
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(3, 32)
    torch.save({'state_dict': state}, ckpt)
    model = SLaK(
        **TINY,
        init_cfg=dict(
            type='Pretrained', checkpoint=str(ckpt), prefix='backbone.'))
    model.init_weights()
    for (name, a), b in zip(source.state_dict().items(),
                            model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_arch_dims_key_is_alias_of_channels():
    by_dims = SLaK(arch=dict(depths=[1, 1], dims=[8, 16]), kernel_sizes=[5, 5])
    by_channels = SLaK(
        arch=dict(depths=[1, 1], channels=[8, 16]), kernel_sizes=[5, 5])
    shapes = {k: v.shape for k, v in by_dims.state_dict().items()}
    other = {k: v.shape for k, v in by_channels.state_dict().items()}
    assert shapes == other and other == shapes
    assert by_channels.channels == [int(8 * 1.3), int(16 * 1.3)]
    with pytest.raises(ValueError, match='not both'):
        SLaK(arch=dict(depths=[1], dims=[8], channels=[8]), kernel_sizes=[5])


# ------------------------------------------------- size argument ranges
# Out of range they would otherwise pass silently (drop_path_rate < 0 acts
# as 0, >= 1 gives NaN, a zero depth an empty stage) or fail deep in torch.
SMALL_ARCH = dict(depths=[1, 1, 1, 1], channels=[4, 8, 8, 8])
SMALL = dict(
    arch=SMALL_ARCH,
    width_factor=1.0,
    kernel_sizes=(5, 5, 3, 3),
    small_kernel=3,
    init_cfg=None)


@pytest.mark.parametrize('kwargs, names', [
    (dict(drop_path_rate=-0.1), ['drop_path_rate', '[0, 1)']),
    (dict(drop_path_rate=1.0), ['drop_path_rate', '[0, 1)']),
    (dict(drop_path_rate='0.1'), ['drop_path_rate', "'0.1'"]),
    (dict(arch=dict(depths=[1, 0, 1, 1], channels=[4, 8, 8, 8])),
     ['depths', '>= 1', '[1, 0, 1, 1]']),
    (dict(arch=dict(depths=[1, -2, 1, 1], channels=[4, 8, 8, 8])), ['depths']),
    (dict(arch=dict(depths=[1, 1.5, 1, 1], channels=[4, 8, 8, 8])), ['depths'
                                                                     ]),
    (dict(arch=dict(depths=[1, 1, 1, 1], channels=[4, 0, 8, 8])),
     ['channels', '[4, 0, 8, 8]']),
    (dict(width_factor=0.2), ['width_factor', '[0, 1, 1, 1]', '>= 0.25']),
    (dict(width_factor=0), ['width_factor', '> 0']),
    (dict(in_channels=0), ['in_channels', 'positive']),
])
def test_size_arguments_out_of_range_are_named(kwargs, names):
    with pytest.raises(ValueError) as info:
        SLaK(**dict(SMALL, **kwargs))
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(drop_path_rate=0.0),
        dict(drop_path_rate=0.99),
        dict(width_factor=0.25),  # smallest: 4 * 0.25 = 1 channel
    ])
def test_size_argument_range_edges_accepted(kwargs):
    model = SLaK(**dict(SMALL, **kwargs)).eval()
    out = model(torch.randn(1, 3, 64, 64))[-1]
    assert torch.isfinite(out).all()
    factor = kwargs.get('width_factor', 1.0)
    assert model.channels == [int(c * factor) for c in SMALL_ARCH['channels']]
