"""Edge inputs of the op: a NaN/Inf pixel stays local on every plan, as in
F.conv2d (an FFT pass meeting one runs directly, and says so); an empty
batch or map gives the empty result and zero gradients."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from mmslak.ops.depthwise_conv import Plan, depthwise_conv2d, dispatch


def _oracle(x, w):
    kh, kw = w.shape[-2:]
    return F.conv2d(
        x.double(), w.double(), padding=(kh // 2, kw // 2), groups=x.shape[1])


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_fft_plan_keeps_a_non_finite_pixel_local(bad):
    x = torch.randn(2, 3, 20, 24, dtype=torch.float32)
    x[1, 2, 3, 4] = bad
    w = torch.randn(3, 1, 7, 5, requires_grad=True)
    xr = x.clone().requires_grad_(True)
    with dispatch(plan=Plan('fft', 'fft', 'fft')), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        y = depthwise_conv2d(xr, w)
    assert any('stay local' in str(c.message) for c in caught)
    ref = _oracle(x, w.detach())
    # non-finite exactly where F.conv2d's are: the kernel's footprint
    # around (3, 4) in image 1, channel 2 (rows 0-6, cols 2-6)
    bad_map = ~torch.isfinite(ref)
    assert torch.equal(~torch.isfinite(y), bad_map)
    assert int(bad_map.sum()) == 7 * 5
    assert bad_map[1, 2, 0:7, 2:7].all()
    torch.testing.assert_close(
        y[~bad_map].double(), ref[~bad_map], rtol=1e-4, atol=1e-4)


def test_fft_plan_on_finite_input_stays_fft():
    x = torch.randn(1, 2, 16, 16)
    w = torch.randn(2, 1, 9, 5)
    with dispatch(plan=Plan('fft', 'fft', 'fft')), \
            warnings.catch_warnings():
        warnings.simplefilter('error')  # no fallback warning
        y = depthwise_conv2d(x, w)
    torch.testing.assert_close(y.double(), _oracle(x, w), rtol=1e-4, atol=1e-4)


def test_fft_backward_with_a_non_finite_gradient_stays_local():
    x = torch.randn(1, 2, 12, 12, requires_grad=True)
    w = torch.randn(2, 1, 5, 5, requires_grad=True)
    g = torch.randn(1, 2, 12, 12)
    g[0, 0, 6, 6] = float('nan')
    with dispatch(plan=Plan('fft', 'fft', 'fft')), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        depthwise_conv2d(x, w).backward(g)
    assert sum('stay local' in str(c.message) for c in caught) == 2
    x2 = x.detach().double().requires_grad_(True)
    F.conv2d(x2, w.detach().double(), padding=2, groups=2).backward(g.double())
    # the input gradient: NaN only under the 5x5 footprint of (6, 6)
    assert torch.equal(torch.isnan(x.grad), torch.isnan(x2.grad))
    assert int(torch.isnan(x.grad).sum()) == 25
    ok = ~torch.isnan(x2.grad)
    torch.testing.assert_close(
        x.grad[ok].double(), x2.grad[ok], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('plan', [
    None,
    Plan('fft', 'fft', 'fft'),
    Plan('nchw', 'nchw', 'nchw'),
    Plan('cl', 'cl', 'cl')
])
@pytest.mark.parametrize('shape', [(0, 4, 16, 16), (2, 4, 0, 16),
                                   (2, 4, 16, 0), (0, 4, 0, 0)])
def test_empty_batch_or_map_gives_empty_result_and_zero_grads(plan, shape):
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(4, 1, 7, 5, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    with dispatch(plan=plan):
        y = depthwise_conv2d(x, w, b)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.parametrize('plan', [None, Plan('fft', 'fft', 'fft')])
def test_mismatched_dtypes_are_refused_like_conv2d(plan):
    x = torch.randn(1, 2, 8, 8)
    w, b = torch.randn(2, 1, 5, 3), torch.randn(2)
    with pytest.raises(RuntimeError):  # the oracle refuses it too
        F.conv2d(x, w.double(), padding=(2, 1), groups=2)
    with dispatch(plan=plan):
        with pytest.raises(TypeError) as info:
            depthwise_conv2d(x, w.double(), b)
        assert str(info.value) == (
            'depthwise_conv2d expects the weight in the dtype of x '
            '(torch.float32), got torch.float64')
        with pytest.raises(TypeError, match='the bias in the dtype of x'):
            depthwise_conv2d(x, w, b.to(torch.bfloat16))


def test_set_dispatch_drops_a_forced_plan_like_dispatch(monkeypatch):
    import mmslak.ops.depthwise_conv as dc
    monkeypatch.setitem(dc._state, 'forced', Plan('fft', 'fft', 'fft'))
    monkeypatch.setitem(dc._state, 'mode', 'heuristic')
    x, w = torch.randn(1, 2, 64, 64), torch.randn(2, 1, 31, 5)
    dc.set_dispatch('reference')
    assert dc._state['forced'] is None
    assert dc.plan_for(x, w) == dc.heuristic_plan(x, w)  # forced plan gone
