"""The SLaK backbone on the fast path (channels_last, dispatched op, kernel
crop) computes what the reference way (NCHW F.conv2d) computes."""
import pytest
import torch

from mmslak.models.backbones.slak import SLaK
from mmslak.ops import dispatch, preferred_memory_format


def tiny_slak(**kwargs):
    torch.manual_seed(0)
    # Kernels larger than the late maps (8, 4, 2 px), so the crop is used.
    return SLaK(
        arch=dict(depths=[1, 1, 2, 1], dims=[8, 8, 16, 16]),
        width_factor=1.0,
        kernel_sizes=(13, 11, 9, 7),
        **kwargs).double()


@pytest.mark.parametrize('gap', [True, False])
def test_fast_path_matches_reference(gap):
    model = tiny_slak(
        gap_before_final_norm=gap,
        out_indices=(0, 1, 2, 3),
        layer_scale_init_value=1.0)
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    grads = []
    outs = []
    for mode in (None, 'reference'):
        model.zero_grad()
        with dispatch(mode):
            out = model(x)
        sum((o *
             torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
            for o in out).backward()
        outs.append(out)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for fast, ref in zip(*outs):
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)
    for name in grads[1]:
        torch.testing.assert_close(
            grads[0][name],
            grads[1][name],
            rtol=1e-8,
            atol=1e-10,
            msg=lambda m: f'{name}: {m}')


def test_outputs_keep_the_input_memory_format():
    model = tiny_slak(gap_before_final_norm=False, out_indices=(0, 3)).eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    assert preferred_memory_format(x) == torch.channels_last
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            for out in model(x.contiguous(memory_format=fmt)):
                assert out.is_contiguous(memory_format=fmt)


def test_channels_last_env_override(monkeypatch):
    x = torch.randn(1, 3, 8, 8)
    monkeypatch.setenv('MMSLAK_CHANNELS_LAST', '0')
    assert preferred_memory_format(x) == torch.contiguous_format
    monkeypatch.setenv('MMSLAK_CHANNELS_LAST', 'yes')
    with pytest.raises(ValueError, match='MMSLAK_CHANNELS_LAST'):
        preferred_memory_format(x)
    monkeypatch.delenv('MMSLAK_CHANNELS_LAST')
    with dispatch('reference'):
        assert preferred_memory_format(x) == torch.contiguous_format
