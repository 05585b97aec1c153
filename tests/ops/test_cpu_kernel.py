"""The compiled CPU kernel (strategy 'cpp') against float64 F.conv2d at
edge shapes, with the path it ran asserted (no silent fallback) by a
test-side spy on the kernel's Python entry points (:func:`kernel_calls`)."""
import contextlib
import os

import pytest
import torch
import torch.nn.functional as F

from mmslak.ops import Plan, cpu_kernel
from mmslak.ops import depthwise_conv as dc
from mmslak.ops import depthwise_conv2d, dispatch

CPP = Plan('cpp', 'cpp', 'cpp')


@pytest.fixture(autouse=True, scope='module')
def built():
    assert cpu_kernel.available(), cpu_kernel.error()


@contextlib.contextmanager
def kernel_calls():
    """Spy on the compiled kernel: while open, ``cpu_kernel.forward`` and
    ``cpu_kernel.weight_grad`` (which the 'cpp' passes look up on the
    module at run time, inside the custom ops) log the pass each call runs
    ('forward', 'input_grad' for a flipped forward, 'weight_grad') into the
    list yielded, then call the real function; restored on exit."""
    calls = []
    real_forward, real_weight_grad = cpu_kernel.forward, cpu_kernel.weight_grad

    def forward(*args, **kwargs):
        flip = kwargs.get('flip', len(args) > 3 and args[3])
        calls.append('input_grad' if flip else 'forward')
        return real_forward(*args, **kwargs)

    def weight_grad(*args, **kwargs):
        calls.append('weight_grad')
        return real_weight_grad(*args, **kwargs)

    cpu_kernel.forward, cpu_kernel.weight_grad = forward, weight_grad
    try:
        yield calls
    finally:
        cpu_kernel.forward = real_forward
        cpu_kernel.weight_grad = real_weight_grad


def reference64(x, w, b, g):
    """Output and gradients of float64 F.conv2d (the oracle)."""
    xr = x.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_()
    kh, kw = w.shape[-2:]
    y = F.conv2d(
        xr,
        wr,
        None if b is None else b.double(),
        padding=(kh // 2, kw // 2),
        groups=x.shape[1])
    y.backward(g.double())
    return y, xr.grad, wr.grad


def check(actual, expected, rtol, name):
    err = (actual.double() - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= rtol * max(scale, 1e-30), f'{name}: {err:.2e} vs {scale}'


def run(x, w, b=None, plan=CPP, rtol=1e-5, passes=None):
    """The op under ``plan`` (None: the heuristic's) against the oracle;
    the compiled kernel must have run exactly ``passes`` (default: the
    passes ``plan`` gives to 'cpp')."""
    if passes is None:
        passes = [p for p, s in zip(Plan._fields, plan) if s == 'cpp']
    g = torch.randn(x.shape, dtype=x.dtype)
    xl = x.detach().requires_grad_()
    wl = w.detach().requires_grad_()
    with kernel_calls() as calls:
        with dispatch(plan=plan):
            y = depthwise_conv2d(xl, wl, b)
        y.backward(g)
    assert sorted(calls) == sorted(passes), (calls, plan)
    y_ref, gx_ref, gw_ref = reference64(x, w, b, g)
    assert y.shape == x.shape and y.dtype == x.dtype
    check(y, y_ref, rtol, 'y')
    check(xl.grad, gx_ref, rtol, 'grad_x')
    check(wl.grad, gw_ref, rtol, 'grad_w')
    return y, xl.grad


@pytest.mark.parametrize(
    'shape',
    [
        (1, 1, 1, 1, 1, 1),
        (1, 3, 1, 1, 5, 5),  # 1x1 map: cropped to a 1x1 kernel
        (1, 5, 1, 7, 51, 5),  # one row
        (2, 7, 3, 4, 51, 51),  # map smaller than the kernel
        (1, 17, 9, 33, 5, 31),  # channels not a multiple of the vector
        (3, 40, 12, 20, 13, 5),
        (1, 2, 30, 18, 5, 27),
    ])
@pytest.mark.parametrize('layout', ['nchw', 'cl'])
def test_edge_shapes_fp32(shape, layout):
    n, c, h, w, kh, kw = shape
    x = torch.randn(n, c, h, w)
    if layout == 'cl':
        x = x.contiguous(memory_format=torch.channels_last)
    y, gx = run(x, torch.randn(c, 1, kh, kw), torch.randn(c))
    fmt = torch.channels_last if layout == 'cl' else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    assert gx.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize(
    'shape',
    [
        # rows of 56 in register blocks of 14 outputs, of 24 in blocks of
        # 12, of 32 in 16 (also any kernel of more than 7 taps per chunk);
        # tall kernels' rows in pairs plus an odd one, in row blocks of 8;
        # the same kernels wide (run transposed); 32 channels: whole vectors
        (1, 32, 12, 56, 21, 5),
        (1, 32, 56, 12, 5, 21),
        (2, 32, 10, 24, 17, 3),
        (2, 32, 24, 10, 3, 17),
        (1, 32, 5, 32, 9, 9),
        (1, 33, 14, 14, 27, 5),
    ])
def test_register_blocks_and_transposed_wide_kernels(shape):
    n, c, h, w, kh, kw = shape
    x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    run(x, torch.randn(c, 1, kh, kw), torch.randn(c))
    run(x.contiguous(), torch.randn(c, 1, kh, kw))


def test_kernel_larger_than_map_without_crop():
    """The kernel itself (no crop in front) gives F.conv2d's result when
    taps reach past the map on both sides."""
    x = torch.randn(2, 6, 3, 4).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 1, 11, 13)
    g = torch.randn_like(x)
    y_ref, gx_ref, gw_ref = reference64(x, w, None, g)
    check(cpu_kernel.forward(x, w), y_ref, 1e-5, 'y')
    check(cpu_kernel.forward(g, w, flip=True), gx_ref, 1e-5, 'grad_x')
    check(cpu_kernel.weight_grad(g, x, 11, 13), gw_ref, 1e-5, 'grad_w')


def test_non_contiguous_inputs():
    """Strided views (a channel slice, a transposed map) are read through
    their strides."""
    base = torch.randn(2, 12, 10, 14)
    x = base[:, ::2]
    assert not x.is_contiguous()
    run(x, torch.randn(6, 1, 9, 5))
    xt = torch.randn(2, 6, 14, 10).transpose(2, 3)
    run(xt, torch.randn(6, 1, 5, 9))


@pytest.mark.parametrize('shape', [(0, 4, 8, 8), (2, 4, 0, 8), (2, 0, 5, 5)])
def test_empty_inputs(shape):
    x = torch.randn(shape).requires_grad_()
    w = torch.randn(shape[1], 1, 5, 5, requires_grad=True)
    with dispatch(plan=CPP):
        y = depthwise_conv2d(x, w)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert w.grad.shape == w.shape and torch.all(w.grad == 0)


def test_bf16_matches_float64():
    """bf16 storage, fp32 math: only the rounding of inputs and output."""
    x = torch.randn(2, 20, 16,
                    24).contiguous(memory_format=torch.channels_last)
    w = torch.randn(20, 1, 31, 5) / 12
    xb, wb = x.bfloat16(), w.bfloat16()
    g = torch.randn_like(x).bfloat16()
    xl = xb.detach().requires_grad_()
    wl = wb.detach().requires_grad_()
    with dispatch(plan=CPP):
        y = depthwise_conv2d(xl, wl)
    y.backward(g)
    assert y.dtype == torch.bfloat16 and wl.grad.dtype == torch.bfloat16
    y_ref, gx_ref, gw_ref = reference64(xb, wb, None, g)
    check(y, y_ref, 1e-2, 'bf16 y')
    check(xl.grad, gx_ref, 1e-2, 'bf16 grad_x')
    check(wl.grad, gw_ref, 1e-2, 'bf16 grad_w')


def test_gradcheck_float64():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 7, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    with kernel_calls() as calls, dispatch(plan=CPP):
        assert torch.autograd.gradcheck(depthwise_conv2d, (x, w, b))
    assert set(calls) == set(Plan._fields)


def test_heuristic_runs_the_compiled_kernel():
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    assert dc.heuristic_plan(x, torch.randn(8, 1, 31, 5)) == CPP
    run(x, torch.randn(8, 1, 31, 5), plan=None, passes=Plan._fields)


def test_build_failure_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setitem(cpu_kernel._state, 'loaded', None)
    monkeypatch.setitem(cpu_kernel._state, 'error', None)

    def no_compiler(verbose=False):
        raise RuntimeError('c++: command not found')

    monkeypatch.setattr(cpu_kernel, '_build', no_compiler)
    x = torch.randn(2, 4, 16, 16)
    w = torch.randn(4, 1, 31, 5)
    with pytest.warns(UserWarning, match='c\\+\\+: command not found'):
        assert dc.heuristic_plan(x, w) == Plan('cl', 'cl', 'fft')
    assert cpu_kernel.error() == 'c++: command not found'
    with pytest.raises(RuntimeError, match='compiled CPU kernel'):
        with dispatch(plan=CPP):
            depthwise_conv2d(x, w)


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setitem(cpu_kernel._state, 'loaded', None)
    monkeypatch.setenv('MMSLAK_DWCONV_CPP', '0')
    assert not cpu_kernel.available()
    assert 'MMSLAK_DWCONV_CPP=0' in cpu_kernel.error()


def test_build_cache_is_keyed_and_outside_the_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv('MMSLAK_CACHE', str(tmp_path))
    here = cpu_kernel.build_dir()
    assert here.startswith(str(tmp_path))
    monkeypatch.setattr(cpu_kernel, '_cpu_flags', lambda: 'sse2 only')
    assert cpu_kernel.build_dir() != here  # another CPU rebuilds


def test_build_compiles_a_copy_of_the_source_in_its_keyed_dir(tmp_path):
    """Checkouts sharing the cache build one copy (one path, one mtime for
    ninja), byte-identical to the checkout's source, written once."""
    path = cpu_kernel._source_copy(str(tmp_path))
    assert os.path.dirname(path) == str(tmp_path)
    with open(path, 'rb') as a, open(cpu_kernel._SOURCE, 'rb') as b:
        assert a.read() == b.read()
    os.utime(path, (1, 1))
    assert cpu_kernel._source_copy(str(tmp_path)) == path
    assert os.stat(path).st_mtime == 1  # not rewritten
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]
