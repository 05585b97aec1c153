import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmslak.models.layers import DecomposedLargeKernelConv, LayerNorm2d


def _randomise_bn(module: nn.Module) -> None:
    """Give every BN non-trivial statistics so that folding is tested."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _reference(layer: DecomposedLargeKernelConv, x: torch.Tensor):
    """Eval-mode output computed independently with F.conv2d and the BN
    formula."""
    out = 0
    for branch in (layer.LoRA1, layer.LoRA2, layer.small_conv):
        w = branch.conv.weight
        kh, kw = w.shape[-2:]
        y = F.conv2d(x, w, padding=(kh // 2, kw // 2), groups=w.shape[0])
        bn = branch.bn
        y = (y - bn.running_mean[:, None, None]
             ) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        out = out + y * bn.weight[:, None, None] + bn.bias[:, None, None]
    return out


@pytest.mark.parametrize('k,small', [(13, 5), (7, 3), (5, 5), (51, 5)])
@pytest.mark.parametrize('hw', [(9, 9), (12, 17), (3, 4)])
def test_branches_shapes_and_values(k, small, hw):
    layer = DecomposedLargeKernelConv(6, k, small).eval()
    _randomise_bn(layer)
    assert layer.LoRA1.conv.weight.shape == (6, 1, k, small)
    assert layer.LoRA2.conv.weight.shape == (6, 1, small, k)
    assert layer.small_conv.conv.weight.shape == (6, 1, small, small)
    x = torch.randn(2, 6, *hw)
    with torch.no_grad():
        out = layer(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, _reference(layer, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('k,small', [(13, 5), (7, 3), (5, 5), (31, 5)])
def test_switch_to_deploy_equivalent(k, small):
    layer = DecomposedLargeKernelConv(8, k, small).eval()
    _randomise_bn(layer)
    x = torch.randn(2, 8, 20, 15)
    with torch.no_grad():
        before = layer(x)
        layer.switch_to_deploy()
        after = layer(x)
    assert layer.small_conv is None and layer.deploy
    assert isinstance(layer.LoRA1.bn, nn.Identity)
    assert layer.LoRA1.conv.bias is not None
    assert layer.LoRA1.conv.weight.shape == (8, 1, k, small)
    assert layer.LoRA2.conv.weight.shape == (8, 1, small, k)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # A second call is a no-op.
    layer.switch_to_deploy()


def test_deploy_constructor_matches_switched_keys():
    layer = DecomposedLargeKernelConv(4, 9, 3).eval()
    layer.switch_to_deploy()
    built = DecomposedLargeKernelConv(4, 9, 3, deploy=True)
    assert set(layer.state_dict()) == set(built.state_dict())
    built.load_state_dict(layer.state_dict())


def test_without_small_kernel():
    layer = DecomposedLargeKernelConv(4, 9, None).eval()
    assert layer.small_conv is None
    assert layer.LoRA1.conv.weight.shape == (4, 1, 9, 1)
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        before = layer(x)
        layer.switch_to_deploy()
        torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kernel,small', [(8, 5), (0, 5), (-3, 5), (7, 4),
                                          (3, 5), (7.0, 5)])
def test_bad_kernel_sizes(kernel, small):
    with pytest.raises(ValueError, match='kernel'):
        DecomposedLargeKernelConv(4, kernel, small)


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
