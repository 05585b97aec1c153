"""SLaK size arguments out of range are refused, naming the argument and
its valid range; the edges of each range are accepted."""
import re

import pytest
import torch

from mmslak.models import SLaK

ARCH = dict(depths=[1, 1, 1, 1], dims=[4, 8, 8, 8])
BASE = dict(
    arch=ARCH,
    width_factor=1.0,
    kernel_sizes=(5, 5, 3, 3),
    small_kernel=3,
    init_cfg=None)


@pytest.mark.parametrize('kwargs, message', [
    (dict(drop_path_rate=-0.1), 'drop_path_rate must be a number in [0, 1)'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be a number in [0, 1)'),
    (dict(drop_path_rate='0.1'), "in [0, 1), got '0.1'"),
    (dict(arch=dict(depths=[1, 0, 1, 1], dims=[4, 8, 8, 8])),
     'arch depths must be positive integers (>= 1), got [1, 0, 1, 1]'),
    (dict(arch=dict(depths=[1, -2, 1, 1], dims=[4, 8, 8, 8])),
     'arch depths must be positive integers'),
    (dict(arch=dict(depths=[1, 1.5, 1, 1], dims=[4, 8, 8, 8])),
     'arch depths must be positive integers'),
    (dict(arch=dict(depths=[1, 1, 1, 1], dims=[4, 0, 8, 8])),
     'arch dims must be positive integers'),
    (dict(width_factor=0.2),
     'width_factor 0.2 leaves a stage without channels '
     '(int(dims * width_factor) = [0, 1, 1, 1] for dims [4, 8, 8, 8]); '
     'valid: width_factor >= 0.25'),
    (dict(width_factor=0), 'width_factor must be a number > 0, got 0'),
    (dict(in_channels=0), 'in_channels must be a positive integer, got 0'),
])
def test_out_of_range(kwargs, message):
    cfg = dict(BASE, **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        SLaK(**cfg)


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(drop_path_rate=0.0),
        dict(drop_path_rate=0.99),
        dict(width_factor=0.25),  # smallest: 4 * 0.25 = 1 channel
    ])
def test_range_edges_accepted(kwargs):
    model = SLaK(**dict(BASE, **kwargs)).eval()
    out = model(torch.randn(1, 3, 64, 64))[-1]
    assert torch.isfinite(out).all()
    expected = [int(d * kwargs.get('width_factor', 1.0)) for d in ARCH['dims']]
    assert model.channels == expected  # int(d * factor), by hand
