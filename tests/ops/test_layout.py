"""mmslak.ops.layout: the memory format the SLaK backbone runs in.

Oracles: preferred_memory_format's documented choices, by hand, at the
boundaries of the CPU's last-stage exception; for the backbone that runs
in them, the reference way (NCHW F.conv2d, ``dispatch('reference')``) in
float64, outputs and every parameter's gradient.
"""
import types

import pytest
import torch

from mmslak.models.backbones.slak import SLaK
from mmslak.ops import dispatch, preferred_memory_format

CL, NCHW = torch.channels_last, torch.contiguous_format


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv('MMSLAK_CHANNELS_LAST', raising=False)


@pytest.mark.parametrize(
    'h,w,kernel_size,fmt',
    [
        (56, 56, None, CL),
        (7, 7, None, CL),  # no kernel size: no exception
        (7, 7, 13, NCHW),  # SLaK's last stage
        (27, 29, 13, NCHW),  # 783 pixels
        (28, 28, 13, CL),  # 784 pixels
        (7, 7, 15, CL),
        (7, 7, 3, NCHW),
        (7, 7, 14, CL),  # at most 13
        (7, 200, 13, CL),  # 1400 pixels on a non-square map
        (40, 7, 13, NCHW),  # 280 pixels
    ])
def test_cpu_choice(h, w, kernel_size, fmt):
    assert preferred_memory_format(torch.empty(1, 2, h, w), kernel_size) == fmt


def test_other_devices():
    cuda = types.SimpleNamespace(
        device=types.SimpleNamespace(type='cuda'), shape=(1, 2, 7, 7))
    assert preferred_memory_format(cuda, 13) == CL  # no exception on CUDA
    assert preferred_memory_format(
        torch.empty(1, 2, 7, 7, device='meta'), None) == NCHW


def test_env_override_and_reference_mode(monkeypatch):
    x = torch.empty(1, 2, 56, 56)
    with dispatch('reference'):
        assert preferred_memory_format(x) == NCHW
        monkeypatch.setenv('MMSLAK_CHANNELS_LAST', '1')
        assert preferred_memory_format(x) == CL
    monkeypatch.setenv('MMSLAK_CHANNELS_LAST', '0')
    assert preferred_memory_format(x) == NCHW
    monkeypatch.setenv('MMSLAK_CHANNELS_LAST', 'yes')
    with pytest.raises(
            ValueError,
            match=r"^MMSLAK_CHANNELS_LAST must be 0 or 1, got 'yes'$"):
        preferred_memory_format(x)


# ------------------------------------------- the backbone in these formats
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
