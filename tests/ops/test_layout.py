"""preferred_memory_format (mmslak.ops.layout): the documented choices, by
hand, at the boundaries of the CPU's last-stage exception."""
import types

import pytest
import torch

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
