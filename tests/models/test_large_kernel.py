"""The decomposed large-kernel layer and its deploy form against a float64
oracle written here (unfused F.conv2d + the BN formula with eps), at the
edges too: tiny and huge running variances (a missing or wrong eps shows), a
non-default eps, batch 1, 1x1 maps, maps smaller than the kernel, fp16/bf16;
where each folded value goes; the argument errors; LayerNorm2d."""
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmslak.models.layers import DecomposedLargeKernelConv, LayerNorm2d
from mmslak.models.layers.large_kernel import ConvBN, LargeKernelDWConv2d


def _set_bn(layer, var_scale: float, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in layer.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 2 - 1)
            m.running_var.copy_(var_scale *
                                (0.5 + torch.rand(c, generator=gen)))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=gen))
            m.bias.data.copy_(torch.rand(c, generator=gen) - 0.5)


def _oracle(branches, x: torch.Tensor) -> torch.Tensor:
    """float64 eval-mode output of the unfused branches: (conv, bn) pairs
    as plain tensors copied before any folding."""
    x = x.double()
    out = 0
    for w, mean, var, gamma, beta, eps in branches:
        kh, kw = w.shape[-2:]
        y = F.conv2d(x, w, padding=(kh // 2, kw // 2), groups=w.shape[0])
        y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + eps)
        out = out + y * gamma[:, None, None] + beta[:, None, None]
    return out


def _branches(layer):
    out = []
    for b in (layer.LoRA1, layer.LoRA2, layer.small_conv):
        if b is None:
            continue
        out.append(
            tuple(t.detach().double().clone()
                  for t in (b.conv.weight, b.bn.running_mean, b.bn.running_var,
                            b.bn.weight, b.bn.bias)) + (b.bn.eps, ))
    return out


# (var scale, eps): variances far below and far above eps; a non-default eps
EDGES = [(1e-9, 1e-5), (1e-7, 1e-3), (1e6, 1e-5), (1.0, 0.5)]


@pytest.mark.parametrize('var_scale,eps', EDGES)
@pytest.mark.parametrize('k,small', [(7, 3), (13, 5), (9, None), (51, 5)])
@pytest.mark.parametrize('shape', [(1, 4, 1, 1), (1, 4, 3, 2), (2, 4, 6, 17)])
def test_train_and_deploy_form_match_float64_oracle(var_scale, eps, k, small,
                                                    shape):
    layer = DecomposedLargeKernelConv(
        4, k, small, norm_cfg=dict(type='BN', eps=eps)).eval()
    strip = small or 1  # no small kernel: 1-wide strips
    assert layer.LoRA1.conv.weight.shape == (4, 1, k, strip)
    assert layer.LoRA2.conv.weight.shape == (4, 1, strip, k)
    assert (layer.small_conv is None) is (small is None)
    _set_bn(layer, var_scale)
    branches = _branches(layer)
    x = torch.randn(*shape)
    expected = _oracle(branches, x)
    # relative to the output's size: with var 1e-9 outputs are ~1e2..1e4
    tol = dict(rtol=1e-4, atol=1e-4 * float(expected.abs().max()) + 1e-6)
    with torch.no_grad():
        out = layer(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out.double(), expected, **tol)
        layer.switch_to_deploy()
        assert layer.deploy and layer.small_conv is None
        assert layer.LoRA1.conv.bias is not None
        assert layer.LoRA1.conv.weight.shape == (4, 1, k, strip)
        assert layer.LoRA2.conv.weight.shape == (4, 1, strip, k)
        torch.testing.assert_close(layer(x).double(), expected, **tol)


@pytest.mark.parametrize('k,small', [(7, 3), (11, 5), (5, 5)])
def test_folded_kernels_equal_hand_formula(k, small):
    # where each folded value goes, not only the summed output: the small
    # kernel lands in the centre columns/rows of the Kx5 strip, nowhere else
    layer = DecomposedLargeKernelConv(3, k, small).eval()
    _set_bn(layer, 1e-3)
    b1, b2, b3 = _branches(layer)

    def scale_shift(branch):
        w, mean, var, gamma, beta, eps = branch
        s = gamma / torch.sqrt(var + eps)
        return w * s[:, None, None, None], beta - mean * s

    w1, c1 = scale_shift(b1)
    w2, c2 = scale_shift(b2)
    w3, c3 = scale_shift(b3)
    off = (k - small) // 2
    w1[:, :, off:off + small, :] += w3
    layer.switch_to_deploy()
    tol = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.LoRA1.conv.weight.double(), w1, **tol)
    torch.testing.assert_close(layer.LoRA1.conv.bias.double(), c1 + c3, **tol)
    torch.testing.assert_close(layer.LoRA2.conv.weight.double(), w2, **tol)
    torch.testing.assert_close(layer.LoRA2.conv.bias.double(), c2, **tol)
    assert isinstance(layer.LoRA1.bn, nn.Identity)
    assert isinstance(layer.LoRA2.bn, nn.Identity)
    assert isinstance(layer.LoRA1.conv, LargeKernelDWConv2d)


@pytest.mark.parametrize('dtype,rtol', [(torch.float16, 2e-2),
                                        (torch.bfloat16, 8e-2)])
@pytest.mark.parametrize('shape', [(1, 4, 1, 1), (1, 4, 5, 3)])
def test_half_precision_train_and_deploy_form(dtype, rtol, shape):
    layer = DecomposedLargeKernelConv(4, 9, 3).eval()
    _set_bn(layer, 1e-2)  # var + eps representable in fp16
    branches = _branches(layer)
    x = torch.randn(*shape)
    expected = _oracle(branches, x)
    tol = dict(rtol=rtol, atol=rtol * float(expected.abs().max()))
    layer = layer.to(dtype)
    with torch.no_grad():
        out = layer(x.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), expected, **tol)
        layer.switch_to_deploy()
        out = layer(x.to(dtype))
        assert out.dtype == dtype and layer.LoRA1.conv.weight.dtype == dtype
        torch.testing.assert_close(out.double(), expected, **tol)


def test_syncbn_folds_and_other_norms_are_refused():
    layer = DecomposedLargeKernelConv(
        4, 7, 3, norm_cfg=dict(type='SyncBN')).eval()
    _set_bn(layer, 1e-4)
    branches = _branches(layer)
    x = torch.randn(1, 4, 6, 6)
    layer.switch_to_deploy()
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x).double(), _oracle(branches, x), rtol=1e-4, atol=1e-4)
    gn = DecomposedLargeKernelConv(
        4, 7, 3, norm_cfg=dict(type='GN', num_groups=2))
    with pytest.raises(TypeError, match='GroupNorm'):
        gn.switch_to_deploy()
    assert not gn.deploy and gn.small_conv is not None


def test_deploy_branch_fused_weight_is_its_own_weight_and_bias():
    branch = ConvBN(3, (5, 3), dict(type='BN'), deploy=True)
    assert isinstance(branch.bn, nn.Identity)
    branch.conv.bias.data.uniform_(1, 2)
    w, b = branch.fused_weight_bias()
    assert torch.equal(w, branch.conv.weight) and torch.equal(
        b, branch.conv.bias)
    assert w.data_ptr() != branch.conv.weight.data_ptr()  # copies
    # a bias-less conv with no norm folds to a zero bias
    branch.conv.bias = None
    w, b = branch.fused_weight_bias()
    assert torch.equal(b, torch.zeros(3))


def test_deploy_constructor_form():
    layer = DecomposedLargeKernelConv(4, 9, deploy=True)
    assert layer.deploy and layer.small_conv is None
    assert layer.small_kernel == 5
    for branch, shape in ((layer.LoRA1, (9, 5)), (layer.LoRA2, (5, 9))):
        assert isinstance(branch.bn, nn.Identity)
        assert branch.conv.bias is not None
        assert tuple(branch.conv.weight.shape[-2:]) == shape
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.switch_to_deploy()  # already deployed: a no-op
    assert all(
        torch.equal(v, before[k]) for k, v in layer.state_dict().items())
    assert 'deploy=True' in repr(layer) and 'kernel_size=9' in repr(layer)
    assert repr(layer).count('channels=4, kernel_size=9, small_kernel=5') == 1


@pytest.mark.parametrize('kernel', [(5, 3), (1, 7), (9, 1)])
def test_dwconv_attributes_describe_its_computation(kernel):
    # nn.Conv2d's own forward (what FLOP counters and exporters read from
    # stride/padding/groups) equals the fast op's output
    conv = LargeKernelDWConv2d(3, kernel, bias=True)
    conv.bias.data.uniform_(-1, 1)
    assert conv.padding == (kernel[0] // 2, kernel[1] // 2)
    assert conv.groups == 3 and conv.stride == (1, 1)
    x = torch.randn(1, 3, 4, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            conv(x), nn.Conv2d.forward(conv, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kernel,match', [((4, 3), 'kernel height'),
                                          ((3, 4), 'kernel width'),
                                          ((True, 3), 'kernel height')])
def test_dwconv_bad_kernel_names_the_side(kernel, match):
    with pytest.raises(ValueError, match=f'^{match} must be a positive odd'):
        LargeKernelDWConv2d(3, kernel)


def test_dwconv_has_no_bias_by_default():
    assert LargeKernelDWConv2d(3, (5, 5)).bias is None


@pytest.mark.parametrize(
    'kernel,small,names',
    [
        (8, 3, ['kernel_size', '8']),
        (0, 3, ['kernel_size']),
        (-3, 3, ['kernel_size']),
        (7.0, 3, ['kernel_size']),
        (7, 4, ['small_kernel', '4']),
        (7, 0, ['small_kernel']),
        (7, True, ['small_kernel']),
        (7, 9, ['small_kernel', '9', '7']),  # larger than the kernel
    ])
def test_bad_kernel_sizes_are_named(kernel, small, names):
    with pytest.raises(ValueError) as info:
        DecomposedLargeKernelConv(4, kernel, small)
    for name in names:  # named as a word, not inside another
        assert re.search(rf'\b{re.escape(name)}\b', str(info.value)), name


def test_init_cfg_reaches_mmengine():
    init_cfg = dict(type='Constant', val=0.5, layer='Conv2d')
    layer = DecomposedLargeKernelConv(4, 7, 3, init_cfg=init_cfg)
    assert layer.init_cfg == init_cfg
    layer.init_weights()
    for branch in (layer.LoRA1, layer.LoRA2, layer.small_conv):
        assert torch.equal(branch.conv.weight,
                           torch.full_like(branch.conv.weight, 0.5))


def test_layernorm2d_eps_shows_on_tiny_variance():
    # per-pixel channel variance ~1e-8, far below the default eps 1e-6
    ln = LayerNorm2d(4)
    assert ln.eps == 1e-6
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64) * 1e-4
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6)
    torch.testing.assert_close(ln.double()(x), expected)
    ln = LayerNorm2d(4, eps=1e-2).double()
    torch.testing.assert_close(ln(x), (x - mean) / torch.sqrt(var + 1e-2))


def test_deploy_constructor_matches_switched_keys():
    layer = DecomposedLargeKernelConv(4, 9, 3).eval()
    layer.switch_to_deploy()
    built = DecomposedLargeKernelConv(4, 9, 3, deploy=True)
    assert set(layer.state_dict()) == set(built.state_dict())
    built.load_state_dict(layer.state_dict())


def test_layernorm2d_matches_layernorm_and_keeps_layout():
    ln = LayerNorm2d(5)
    ln.weight.data.uniform_()
    ln.bias.data.uniform_()
    x = torch.randn(2, 5, 4, 3)
    expected = F.layer_norm(
        x.permute(0, 2, 3, 1), (5, ), ln.weight, ln.bias,
        eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), expected)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = ln(x_cl)
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last)
