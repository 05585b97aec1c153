"""The FFT formulation (mmslak.ops.fft_conv) against float64 F.conv2d, on
the shortest circles the module's docstring claims exact (L = n + p), and
its circle lengths against a hand list of 5-smooth numbers."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from mmslak.ops import fft_conv

# 2^a 3^b 5^c up to 1000, the independent list fft_size must pick from
SMOOTH = sorted({
    2**a * 3**b * 5**c
    for a, b, c in itertools.product(range(10), range(7), range(5))
    if 2**a * 3**b * 5**c <= 1000
})


def test_smooth_numbers_by_hand():
    assert SMOOTH[:20] == [
        1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15, 16, 18, 20, 24, 25, 27, 30, 32, 36
    ]
    for n in range(1, 400):
        assert fft_conv._is_smooth(n) == (n in SMOOTH), n


def test_fft_size_is_the_next_smooth_number():
    for n in range(-3, 400):
        assert fft_conv.fft_size(n) == min(s for s in SMOOTH
                                           if s >= max(n, 1)), n


def test_fft_shape_by_hand():
    assert fft_conv.fft_shape(7, 9, 13, 5) == (15, 12)  # 7+6 -> 15, 9+2
    assert fft_conv.fft_shape(20, 6, 31, 11) == (36, 12)  # 35 -> 36, 11
    assert fft_conv.fft_shape(1, 1, 1, 1) == (1, 1)
    assert fft_conv.fft_shape(16, 10, 1, 3) == (16, 12)  # 16, 11 -> 12


def _oracle_case(n, c, h, w, kh, kw):
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(c, 1, kh, kw, dtype=torch.float64, requires_grad=True)
    g = torch.randn(n, c, h, w, dtype=torch.float64)
    y = F.conv2d(x, wt, padding=(kh // 2, kw // 2), groups=c)
    y.backward(g)
    return x.detach(), wt.detach(), g, y.detach(), x.grad, wt.grad


@pytest.mark.parametrize(
    'shape',
    [
        (2, 3, 6, 9, 7, 3),
        (1, 2, 5, 4, 3, 7),  # kernel wider than the map
        (2, 2, 9, 9, 1, 5),
        (1, 1, 1, 1, 1, 1),
    ])
def test_fft_passes_on_the_shortest_exact_circle(shape):
    n, c, h, w, kh, kw = shape
    x, wt, g, y, gx, gw = _oracle_case(*shape)
    size = (h + kh // 2, w + kw // 2)  # L = n + p, not rounded up
    spec = fft_conv.kernel_spectrum(wt, size)
    assert spec.shape == (c, size[0], size[1] // 2 + 1)
    close = dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fft_conv.fft_forward(x, spec, size), y, **close)
    torch.testing.assert_close(
        fft_conv.fft_input_grad(g, spec, size), gx, **close)
    out = fft_conv.fft_weight_grad(x, g, kh, kw, size)
    assert out.shape == (c, 1, kh, kw)
    torch.testing.assert_close(out, gw, **close)
