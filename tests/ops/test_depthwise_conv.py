"""mmslak.ops.depthwise_conv: the op's values and gradients, its kernel
crop, plans, dispatch, tuning and input checks (mutation testing, issue 12).

Oracles:

* values and gradients: float64 ``F.conv2d`` with the uncropped kernel and
  "same" padding (:func:`oracle`, :func:`oracle_grads`), so a tolerance
  (:func:`assert_rel_close`: 1e-4 relative in fp32, 2e-2 in bf16) measures
  the op's error alone;
* by hand: crop sizes (a K kernel on a map of size H can use
  min(K, 2H - 1) taps), the 1x1 map's formula, where a NaN/Inf may reach,
  the plans at the heuristics' boundaries, exact error messages;
* which strategy ran each pass, read off the aten ops the pass dispatched
  (:class:`OpLog`): an FFT pass calls ``_fft_r2c``, the compiled kernel is
  seen by a spy on its entry points (``test_cpu_kernel.kernel_calls``), a
  direct pass runs ``convolution`` (forward, input gradient) or
  ``convolution_backward`` (weight gradient) on a tensor laid out
  channels_last (``'cl'``) or NCHW (``'nchw'``).
"""
import collections
import contextlib
import random
import re
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from test_cpu_kernel import kernel_calls
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.checkpoint import checkpoint

from mmslak.ops import Plan, cpu_kernel, cropped_kernel_size
from mmslak.ops import depthwise_conv as dc
from mmslak.ops import depthwise_conv2d, dispatch, plan_for, tune_plan

CPU_STRATEGIES = ('nchw', 'cl', 'fft', 'cpp')


def _layout_name(t):
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        return None
    if t.is_contiguous():
        return 'nchw'
    return 'cl' if t.is_contiguous(
        memory_format=torch.channels_last) else 'strided'


class OpLog(TorchDispatchMode):
    """What ran: the aten ops dispatched (``ops``), with the memory format
    of each op's first tensor argument (and second, for a weight gradient),
    and the strategies run inside our custom ops (``passes``), which are
    opaque to a mode (re-entering one below autograd loses lazy views):
    seen by spies on what each strategy calls (:meth:`__enter__`)."""

    CONVS = ('aten::convolution', 'aten::conv2d', 'aten::convolution_backward')

    def __init__(self):
        super().__init__()
        self.ops = []
        self.passes = []

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        if func.namespace == 'mmslak':
            self.ops.append((func.name(), None))
            return func(*args, **(kwargs or {}))
        # a weight gradient's layout is that of both grad and x
        n_args = 2 if func.name() == 'aten::convolution_backward' else 1
        for t in args[:n_args]:
            self.ops.append((func.name(), _layout_name(t)))
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        """Spies, restored on exit: the FFT passes' functions log 'fft',
        the compiled kernel 'cpp' (``kernel_calls``), a direct pass the
        layout of each tensor it hands to its convolution ('nchw' / 'cl',
        from ``_layout``'s result)."""
        self._spies = contextlib.ExitStack()
        self.cpp_calls = self._spies.enter_context(kernel_calls())
        patch = self._spies.enter_context(pytest.MonkeyPatch.context())

        def spy(real, strategy=None):

            def call(*args, **kwargs):
                out = real(*args, **kwargs)
                self.passes.append(strategy or _layout_name(out))
                return out

            return call

        for name in ('fft_forward', 'fft_input_grad', 'fft_weight_grad'):
            patch.setattr(dc, name, spy(getattr(dc, name), 'fft'))
        patch.setattr(dc, '_layout', spy(dc._layout))
        return super().__enter__()

    def __exit__(self, *exc):
        self._spies.close()
        return super().__exit__(*exc)

    def strategy(self):
        """The one strategy these ops were run by."""
        seen = set(self.passes) | {
            lay
            for n, lay in self.ops if n in self.CONVS
        } | ({'cpp'} if self.cpp_calls else set())
        assert len(seen) == 1, (self.ops, self.passes, self.cpp_calls)
        return seen.pop()


def oracle(x, w, b=None):
    """float64 F.conv2d, uncropped kernel, 'same' padding."""
    kh, kw = w.shape[-2:]
    return F.conv2d(
        x.double(),
        w.double(),
        None if b is None else b.double(),
        padding=(kh // 2, kw // 2),
        groups=x.shape[1])


def oracle_grads(x, w, b, g):
    """The oracle's output and its gradients w.r.t. x, w and b (None
    without a bias) for the output gradient g."""
    leaves = [
        None if t is None else t.detach().double().requires_grad_()
        for t in (x, w, b)
    ]
    y = oracle(*leaves)
    y.backward(g.double())
    return y, [None if t is None else t.grad for t in leaves]


def assert_rel_close(actual, expected, rtol, name=''):
    """Norm-relative error <= rtol and elementwise closeness with an
    absolute floor of rtol * max|expected| (elementwise relative error is
    meaningless for entries that cancel to ~0)."""
    actual, expected = actual.double(), expected.double()
    rel = ((actual - expected).norm() / expected.norm().clamp_min(1e-30))
    assert rel.item() <= rtol, f'{name}: relative error {rel.item():.2e}'
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=rtol * expected.abs().max().item(),
        msg=lambda m: f'{name}: {m}')


def _inputs(n, c, h, w, kh, kw, cl, dtype, device='cpu'):
    x = torch.randn(n, c, h, w).to(device=device, dtype=dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(c, 1, kh, kw) / (kh * kw)**.5).to(
        device=device, dtype=dtype)
    b = torch.randn(c).to(device=device, dtype=dtype)
    return x, wt, b


def run_logged(plan, x, w, b, g, wrt):
    """Forward, then a backward w.r.t. ``wrt`` ('x', 'w' or 'b') only,
    each under an OpLog; returns y, the gradient and both logs."""
    leaves = dict(x=x.clone(), w=w.clone(), b=b.clone())
    leaves[wrt].requires_grad_(True)
    with dispatch(plan=plan), OpLog() as fwd:
        y = depthwise_conv2d(leaves['x'], leaves['w'], leaves['b'])
    with OpLog() as bwd:
        y.backward(g)
    return y, leaves[wrt].grad, fwd, bwd


def run_case(n,
             c,
             h,
             w,
             kh,
             kw,
             channels_last,
             plan,
             bias=True,
             rtol=1e-4,
             dtype=torch.float32,
             device='cpu'):
    """The op under ``plan`` against the oracle: output and gradients,
    their dtype, shape and memory format."""
    x, wt, b = _inputs(n, c, h, w, kh, kw, channels_last, dtype, device)
    b = b if bias else None
    g = torch.randn(n, c, h, w).to(device=device, dtype=dtype)
    leaves = [
        t.detach().clone().requires_grad_() for t in (x, wt, b)
        if t is not None
    ]
    with dispatch(plan=plan):
        y = depthwise_conv2d(*leaves)
    y.backward(g)
    y_ref, grads_ref = oracle_grads(x, wt, b, g)
    case = (f'x={n}x{c}x{h}x{w} k={kh}x{kw} cl={channels_last} '
            f'plan={plan}')
    assert y.dtype == dtype and y.shape == x.shape, case
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), case
    assert_rel_close(y, y_ref, rtol, 'output ' + case)
    for name, a, r in zip(('grad_x', 'grad_w', 'grad_b'), leaves, grads_ref):
        assert_rel_close(a.grad, r, rtol, f'{name} {case}')
    assert leaves[0].grad.is_contiguous(memory_format=fmt), case


def sampled_cases(num, seed, max_work=1.5e7, strategies=CPU_STRATEGIES):
    """Seeded sample of (n, c, h, w, kh, kw, channels_last, plan): kernel
    sizes 3..61 as strips (Kx5, 5xK) and squares, maps 7..512, non-square,
    smaller than the kernel; capped in work to keep the sweep fast;
    forced plans drawn from ``strategies`` (the device's)."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < num:
        k = rng.randrange(3, 62, 2)
        kh, kw = rng.choice([(k, 5), (5, k), (k, k),
                             (k, rng.randrange(1, 62, 2))])
        h = rng.choice([7, 9, 13, 14, 16, 28, 31, 56, rng.randint(7, 512)])
        w = rng.choice([h, rng.randint(7, 512)])
        n, c = rng.randint(1, 3), rng.randint(1, 6)
        ch, cw = cropped_kernel_size(kh, kw, h, w)
        if n * c * h * w * ch * cw > max_work:
            continue
        plan = None if rng.random() < .4 else Plan(*(rng.choice(strategies)
                                                     for _ in range(3)))
        cases.append((n, c, h, w, kh, kw, rng.random() < .5, plan))
    return cases


def _map(h, w, cl=False, dtype=torch.float32, c=4):
    x = torch.randn(2, c, h, w, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if cl else x


def _kernel(kh, kw, c=4):
    return torch.randn(c, 1, kh, kw)


EDGE_SHAPES = [
    # (n, c, h, w, kh, kw, hand-computed crop)
    (1, 3, 1, 1, 7, 5, (1, 1)),  # 1x1 map: the centre tap only
    (2, 3, 4, 3, 13, 5, (7, 5)),  # map smaller than the kernel
    (1, 4, 9, 12, 15, 5, (15, 5)),  # Kx5, batch 1
    (1, 4, 12, 5, 5, 15, (5, 9)),  # 5xK, cropped along W only
]

PLANS = [Plan(s, s, s) for s in CPU_STRATEGIES] + [
    Plan('fft', 'cpp', 'nchw'),
    Plan('cl', 'fft', 'cpp'),
    Plan('cpp', 'nchw', 'fft'),
    Plan('nchw', 'cl', 'cl')
]


# -------------------------------------------- values against the oracle
@pytest.mark.parametrize('case', sampled_cases(60, seed=7))
def test_sweep_fp32(case):
    *shape, cl, plan = case
    run_case(*shape, cl, plan)


@pytest.mark.parametrize('plan',
                         [None] + [Plan(s, s, s) for s in CPU_STRATEGIES])
@pytest.mark.parametrize(
    'shape',
    [
        (1, 2, 512, 64, 51, 5),  # the largest map, strip along H
        (1, 2, 40, 512, 5, 61),  # non-square, strip along W, K = 61
        (2, 3, 7, 9, 51, 51),  # map far smaller than the kernel (crop)
        (2, 4, 56, 56, 51, 5),  # SLaK-T stage 1
    ])
def test_named_shapes(shape, plan):
    run_case(*shape, channels_last=True, plan=plan)
    run_case(*shape, channels_last=False, plan=plan, bias=False)


@pytest.mark.parametrize('cl,dtype', [(False, torch.float32),
                                      (True, torch.float32),
                                      (True, torch.bfloat16)])
@pytest.mark.parametrize('plan', PLANS)
@pytest.mark.parametrize('shape', EDGE_SHAPES)
def test_forced_plan_matches_float64_oracle_and_runs_as_asked(
        shape, plan, cl, dtype):
    n, c, h, w, kh, kw, crop = shape
    assert dc.cropped_kernel_size(kh, kw, h, w) == crop
    x, wt, b = _inputs(n, c, h, w, kh, kw, cl, dtype)
    g = torch.randn(n, c, h, w).to(dtype)
    y_ref, grads_ref = oracle_grads(x, wt, b, g)
    rtol = 1e-4 if dtype == torch.float32 else 2e-2
    fmt = torch.channels_last if cl else torch.contiguous_format
    # a layout is visible only where C > 1 and the map is larger than 1x1
    layouts_visible = h * w > 1
    for wrt, ref in zip('xwb', grads_ref):
        y, grad, fwd, bwd = run_logged(plan, x, wt, b, g, wrt)
        case = f'{shape} {plan} cl={cl} {dtype} d/d{wrt}'
        assert y.dtype == dtype and y.is_contiguous(memory_format=fmt), case
        assert grad.dtype == dtype and grad.shape == ref.shape, case
        assert_rel_close(y, y_ref, rtol, 'y ' + case)
        assert_rel_close(grad, ref, rtol, 'grad ' + case)
        if wrt == 'x':
            assert grad.is_contiguous(memory_format=fmt), case
        if layouts_visible:
            assert fwd.strategy() == plan.forward, case
            if wrt != 'b':
                used = plan.input_grad if wrt == 'x' else plan.weight_grad
                assert bwd.strategy() == used, (case, bwd.ops)
        if wrt == 'b':  # the bias gradient is a plain sum: no pass runs
            assert not bwd.passes and not bwd.cpp_calls and not any(
                n.startswith(('aten::_fft', 'aten::convolution'))
                for n, _ in bwd.ops)


def test_one_by_one_map_is_centre_tap_times_pixel_plus_bias():
    """Hand formula: on a 1x1 map only the kernel's centre tap meets a
    pixel, so y = x * w[centre] + b, dL/dx = g * w[centre], dL/dw is g * x
    at the centre and zero elsewhere."""
    x = torch.randn(2, 3, 1, 1, requires_grad=True)
    w = torch.randn(3, 1, 7, 5, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    g = torch.randn(2, 3, 1, 1)
    for plan in [None] + PLANS:
        for t in (x, w, b):
            t.grad = None
        with dispatch(plan=plan):
            y = depthwise_conv2d(x, w, b)
        y.backward(g)
        centre = w.detach()[:, 0, 3, 2]
        expect_w = torch.zeros(3, 1, 7, 5)
        expect_w[:, 0, 3, 2] = (g * x.detach()).sum(0).flatten()
        close = dict(rtol=1e-5, atol=1e-6, msg=str(plan))
        torch.testing.assert_close(
            y,
            x.detach() * centre.view(1, 3, 1, 1) + b.detach().view(1, 3, 1, 1),
            **close)
        torch.testing.assert_close(x.grad, g * centre.view(1, 3, 1, 1),
                                   **close)
        torch.testing.assert_close(w.grad, expect_w, **close)
        torch.testing.assert_close(b.grad, g.sum((0, 2, 3)), **close)


@pytest.mark.parametrize('plan', PLANS[:4])
def test_float64_passes_run_in_float64(plan):
    """fp64 inputs stay fp64 in every pass (an FFT in fp32 would be ~1e-7
    off)."""
    x, w, b = _inputs(2, 3, 10, 9, 11, 5, True, torch.float64)
    g = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    y_ref, refs = oracle_grads(x, w, b, g)
    for wrt, ref in zip('xwb', refs):
        y, grad, _, _ = run_logged(plan, x, w, b, g, wrt)
        assert y.dtype == grad.dtype == torch.float64
        torch.testing.assert_close(y, y_ref, rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(grad, ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    'plan', [Plan('fft', 'fft', 'fft'),
             Plan('cpp', 'cpp', 'cpp')])
def test_backward_computes_only_the_gradients_asked_for(plan):
    x, w, b = _inputs(1, 2, 6, 6, 5, 3, False, torch.float32)
    g = torch.randn(1, 2, 6, 6)
    _, refs = oracle_grads(x, w, b, g)
    for asked in ('x', 'w', 'b', 'xwb'):
        leaves = [
            t.clone().requires_grad_(name in asked)
            for name, t in zip('xwb', (x, w, b))
        ]
        with dispatch(plan=plan):
            y = depthwise_conv2d(*leaves)
        got = torch.autograd.grad(y, [t for t in leaves if t.requires_grad], g)
        want = [r for name, r in zip('xwb', refs) if name in asked]
        for a, r in zip(got, want):
            assert_rel_close(a, r, 1e-4, f'{plan} {asked}')


@pytest.mark.parametrize('kh,kw,h,w,crop', [(9, 1, 3, 9, (5, 1)),
                                            (1, 7, 9, 3, (1, 5)),
                                            (5, 1, 6, 6, (5, 1))])
def test_native_path_pads_the_cropped_kernel(kh, kw, h, w, crop):
    """Kernels of at most 9 taps run as plain F.conv2d (native autograd)
    with the cropped kernel's padding."""
    assert dc.cropped_kernel_size(kh, kw, h, w) == crop
    x, wt, b = _inputs(2, 3, h, w, kh, kw, False, torch.float32)
    g = torch.randn(2, 3, h, w)
    y_ref, refs = oracle_grads(x, wt, b, g)
    leaves = [t.clone().requires_grad_() for t in (x, wt, b)]
    y = depthwise_conv2d(*leaves)
    assert type(y.grad_fn).__name__ == 'ConvolutionBackward0'
    y.backward(g)
    assert_rel_close(y, y_ref, 1e-5, 'native y')
    for name, t, r in zip('xwb', leaves, refs):
        assert_rel_close(t.grad, r, 1e-5, f'native d/d{name}')


def test_triton_strategy_calls_the_kernels_with_the_right_arguments(
        monkeypatch):
    """The 'triton' passes' wiring, without Triton (its numerics are
    tests/ops/test_triton_kernels.py's, in a child process): the kernels
    are replaced by float64 F.conv2d stand-ins, so a wrong argument
    (no flip, the wrong tensor, the uncropped size) gives a wrong result."""
    calls = []

    def forward(x, weight, bias=None, flip=False):
        calls.append(('forward', flip))
        return oracle(x,
                      weight.flip(-2, -1) if flip else weight,
                      bias).to(x.dtype)

    def weight_grad(grad, x, kh, kw):
        calls.append(('weight_grad', kh, kw))
        w0 = torch.zeros(x.shape[1], 1, kh, kw, dtype=torch.float64)
        # (a custom op runs below autograd: aten's backward, not autograd)
        return torch.ops.aten.convolution_backward(grad.double(), x.double(),
                                                   w0, None, (1, 1),
                                                   (kh // 2, kw // 2), (1, 1),
                                                   False, (0, 0), x.shape[1],
                                                   (False, True, False))[1]

    monkeypatch.setattr(dc.triton_kernels, 'unavailable_reason',
                        lambda x: None)
    monkeypatch.setattr(dc.triton_kernels, 'forward', forward)
    monkeypatch.setattr(dc.triton_kernels, 'weight_grad', weight_grad)
    x, w, b = _inputs(2, 3, 4, 9, 13, 5, True, torch.float32)
    g = torch.randn(2, 3, 4, 9)
    y_ref, refs = oracle_grads(x, w, b, g)
    plan = Plan('triton', 'triton', 'triton')
    for wrt, ref, second in zip('xw', refs, [('forward', True),
                                             ('weight_grad', 7, 5)]):
        calls.clear()
        y, grad, _, _ = run_logged(plan, x, w, b, g, wrt)
        assert calls == [('forward', False), second]
        assert grad.dtype == torch.float32
        assert_rel_close(y, y_ref, 1e-5, 'triton y')
        assert_rel_close(grad, ref, 1e-5, f'triton d/d{wrt}')


# ---------------------------------------------------------- kernel crop
@pytest.mark.parametrize(
    'kh,kw,h,w,crop',
    [
        (31, 5, 6, 20, (11, 5)),
        (5, 31, 20, 6, (5, 11)),
        (7, 7, 4, 4, (7, 7)),  # K = 2H - 1: nothing to crop
        (9, 9, 4, 4, (7, 7)),  # K = 2H + 1: one tap each side
        (13, 5, 1, 1, (1, 1)),
        (13, 5, 0, 0, (1, 1)),  # an empty map keeps one tap
        (3, 1, 2, 9, (3, 1)),
    ])
def test_cropped_kernel_size_by_hand(kh, kw, h, w, crop):
    assert dc.cropped_kernel_size(kh, kw, h, w) == crop


@pytest.mark.parametrize('plan', [None, Plan('nchw', 'nchw', 'nchw')])
def test_the_cropped_kernel_is_what_runs(plan):
    """A 31x5 kernel on a 6x20 map runs as its centred 11x5 part (the
    convolution's weight has that shape) and gets zero gradient outside
    it; an uncropped kernel runs whole."""
    x = torch.randn(1, 2, 6, 20)
    w = torch.randn(2, 1, 31, 5, requires_grad=True)
    shapes = []

    class WeightShapes(OpLog):

        def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
            if func.name() in ('aten::convolution', 'mmslak::dwconv_forward'):
                shapes.append(tuple(args[1].shape))
            return super().__torch_dispatch__(func, types_, args, kwargs)

    with dispatch(plan=plan), WeightShapes():
        y = depthwise_conv2d(x, w)
    assert shapes == [(2, 1, 11, 5)]
    assert_rel_close(y, oracle(x, w.detach()), 1e-5, 'cropped')
    y.backward(torch.randn_like(y))
    assert w.grad[:, :, :10].abs().sum() == 0 == w.grad[:, :, 21:].abs().sum()
    assert (w.grad[:, :, 10:21] != 0).all()
    shapes.clear()
    with dispatch(plan=Plan('nchw', 'nchw', 'nchw')), WeightShapes():
        depthwise_conv2d(torch.randn(1, 2, 16, 20), w)
    assert shapes == [(2, 1, 31, 5)]


# ------------------------------------------ non-finite and empty inputs
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
    ref = oracle(x, w.detach())
    # non-finite exactly where F.conv2d's are: the kernel's footprint
    # around (3, 4) in image 1, channel 2 (rows 0-6, cols 2-6)
    bad_map = ~torch.isfinite(ref)
    assert torch.equal(~torch.isfinite(y), bad_map)
    assert int(bad_map.sum()) == 7 * 5
    assert bad_map[1, 2, 0:7, 2:7].all()
    torch.testing.assert_close(
        y[~bad_map].double(), ref[~bad_map], rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize('where', ['x', 'w', 'g'])
@pytest.mark.parametrize('strategy', CPU_STRATEGIES)
def test_non_finite_input_runs_fft_passes_directly_and_only_those(
        where, strategy):
    """A NaN in x, w or the output gradient: an FFT pass that sees it runs
    as 'nchw' with one warning per pass; other strategies run as asked,
    without a warning; passes that do not see it keep the FFT."""
    x, w, _ = _inputs(1, 2, 8, 8, 5, 3, False, torch.float32)
    g = torch.randn(1, 2, 8, 8)
    {'x': x, 'w': w, 'g': g}[where][0, 0, 1, 1] = float('nan')
    sees = dict(
        x=('forward', 'weight_grad'),
        w=('forward', 'input_grad'),
        g=('input_grad', 'weight_grad'))[where]
    plan = Plan(strategy, strategy, strategy)
    for wrt in 'xw':
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            _, grad, fwd, bwd = run_logged(plan, x, w, torch.zeros(2), g, wrt)
        pass_ = 'input_grad' if wrt == 'x' else 'weight_grad'
        ran = [(name, log.strategy())
               for name, log in (('forward', fwd), (pass_, bwd))]
        expected = [
            (name, 'nchw' if strategy == 'fft' and name in sees else strategy)
            for name, _ in ran
        ]
        assert ran == expected
        fell_back = [name for name, s in expected if s != strategy]
        assert len(caught) == len(fell_back)
        for c in caught:
            assert c.category is RuntimeWarning
            assert str(c.message) == (
                'depthwise_conv2d: non-finite (NaN/Inf) values in the input '
                "of an FFT pass; running it as a direct convolution ('nchw') "
                'so that they stay local')


@pytest.mark.parametrize('plan', [
    None,
    Plan('fft', 'fft', 'fft'),
    Plan('nchw', 'nchw', 'nchw'),
    Plan('cl', 'cl', 'cl')
])
@pytest.mark.parametrize('shape', [(0, 4, 16, 16), (2, 4, 0, 16),
                                   (2, 4, 16, 0), (0, 4, 0, 0)])
def test_empty_batch_or_map_gives_empty_result_and_zero_grads(plan, shape):
    """With and without a bias: the empty result, still attached to the
    graph (zero gradients of the right shapes)."""
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(4, 1, 7, 5, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    with dispatch(plan=plan):
        y = depthwise_conv2d(x, w, b)
        y0 = depthwise_conv2d(x, w)
    assert y.shape == y0.shape == x.shape
    (y.sum() + y0.sum()).backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert torch.equal(b.grad, torch.zeros_like(b))


# ------------------------------------------------- autocast like conv2d
@pytest.mark.parametrize(
    'plan', [None, Plan('cl', 'cl', 'fft'),
             Plan('fft', 'fft', 'fft')])
def test_autocast_bf16_cpu(plan):
    """Under autocast, the op runs in bf16 like F.conv2d does. bf16 keeps 8
    significant bits (unit roundoff 2**-9 ~ 2e-3) and both inputs and the
    output are rounded, so we allow 2e-2 relative against float64 and check
    that F.conv2d itself is equally far from it."""
    x = torch.randn(2, 4, 30, 24)
    w = (torch.randn(4, 1, 27, 5) / 12).requires_grad_()
    xr = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16), dispatch(plan=plan):
        y = depthwise_conv2d(xr, w)
        y_native = F.conv2d(x, w.detach(), padding=(13, 2), groups=4)
    assert y.dtype == torch.bfloat16 == y_native.dtype
    g = torch.randn_like(x)
    y.float().backward(g)
    assert w.grad.dtype == torch.float32 and xr.grad.dtype == torch.float32
    x64 = x.double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    y64 = oracle(x64, w64)
    y64.backward(g.double())
    assert_rel_close(y_native.float(), y64, 2e-2, 'native bf16 conv2d')
    assert_rel_close(y.float(), y64, 2e-2, 'bf16 output')
    assert_rel_close(xr.grad, x64.grad, 2e-2, 'bf16 grad_x')
    assert_rel_close(w.grad, w64.grad, 2e-2, 'bf16 grad_w')


@pytest.mark.parametrize('plan', [None, Plan('fft', 'cpp', 'cl')])
def test_autocast_runs_in_the_autocast_dtype_with_bias(plan):
    x = torch.randn(1, 3, 9, 7)
    w = torch.randn(3, 1, 13, 5) / 8
    b = torch.randn(3)
    with torch.autocast('cpu', dtype=torch.bfloat16), dispatch(plan=plan):
        y = depthwise_conv2d(x, w, b)
    assert y.dtype == torch.bfloat16
    ref = oracle(x.bfloat16(), w.bfloat16(), b.bfloat16())
    assert_rel_close(y, ref, 2e-2, 'autocast')
    with torch.autocast('cpu', dtype=torch.bfloat16), dispatch(plan=plan):
        y = depthwise_conv2d(x, w)
    assert y.dtype == torch.bfloat16
    assert_rel_close(y, oracle(x.bfloat16(), w.bfloat16()), 2e-2, 'no bias')


def test_autocast_leaves_float64_alone_like_conv2d():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    w = torch.randn(2, 1, 5, 3, dtype=torch.float64)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = depthwise_conv2d(x, w)
        y_native = F.conv2d(x, w, padding=(2, 1), groups=2)
    assert y_native.dtype == torch.float64
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, oracle(x, w), rtol=1e-12, atol=1e-12)


def test_autocast_empty_batch_has_the_autocast_dtype_like_conv2d():
    x, w = torch.randn(0, 2, 8, 8), torch.randn(2, 1, 5, 3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = depthwise_conv2d(x, w)
        y_native = F.conv2d(x, w, padding=(2, 1), groups=2)
    assert y_native.dtype == torch.bfloat16
    assert y.dtype == torch.bfloat16


# ------------------------------------------------------- dispatch state
@pytest.mark.parametrize('text,plan',
                         [('fft,cpp,nchw', Plan('fft', 'cpp', 'nchw')),
                          ('cl,cl,cl', Plan('cl', 'cl', 'cl')), ('', None)])
def test_env_plan_is_parsed_and_is_the_plan_that_runs(monkeypatch, text, plan):
    monkeypatch.setenv('MMSLAK_DWCONV_PLAN', text)
    assert dc._plan_from_env() == plan
    # the module reads the variable at import: do what the import does
    monkeypatch.setitem(dc._state, 'forced', dc._plan_from_env())
    x, w, b = _inputs(1, 3, 8, 6, 9, 5, False, torch.float32)
    g = torch.randn(1, 3, 8, 6)
    y_ref, refs = oracle_grads(x, w, b, g)
    for wrt, ref in zip('xw', refs):
        y, grad, fwd, bwd = run_logged(None, x, w, b, g, wrt)
        assert_rel_close(y, y_ref, 1e-4, 'y')
        assert_rel_close(grad, ref, 1e-4, wrt)
        if plan is None:  # no variable: the heuristic plan
            expected = dc.heuristic_plan(x, w)
        else:
            expected = plan
        assert dc.plan_for(x, w) == expected
        if expected is not None:
            assert fwd.strategy() == expected.forward
            used = expected.input_grad if wrt == 'x' else \
                expected.weight_grad
            assert bwd.strategy() == used


def test_env_plan_unset_is_none(monkeypatch):
    monkeypatch.delenv('MMSLAK_DWCONV_PLAN', raising=False)
    assert dc._plan_from_env() is None


@pytest.mark.parametrize(
    'text', ['cl,cl', 'cl,cl,fft,nchw', 'cl,gpu,fft', 'cl;cl;cl', 'CL,cl,cl'])
def test_bad_env_plan_is_refused_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv('MMSLAK_DWCONV_PLAN', text)
    message = (f"MMSLAK_DWCONV_PLAN must be three of ['nchw', 'cl', 'fft', "
               f"'cpp', 'triton'] joined by commas, got {text!r}")
    with pytest.raises(ValueError, match='^' + re.escape(message) + '$'):
        dc._plan_from_env()


def test_set_dispatch_sets_each_mode_and_refuses_others():
    try:
        for mode in ('tune', 'reference', 'heuristic'):
            dc.set_dispatch(mode)
            assert dc.get_dispatch() == mode
        message = ("unknown dispatch mode 'fast'; valid modes are "
                   "['heuristic', 'tune', 'reference']")
        with pytest.raises(ValueError, match='^' + re.escape(message) + '$'):
            dc.set_dispatch('fast')
        assert dc.get_dispatch() == 'heuristic'
    finally:
        dc.set_dispatch('heuristic')


def test_set_dispatch_drops_a_forced_plan_like_dispatch(monkeypatch):
    monkeypatch.setitem(dc._state, 'forced', Plan('fft', 'fft', 'fft'))
    monkeypatch.setitem(dc._state, 'mode', 'heuristic')
    x, w = torch.randn(1, 2, 64, 64), torch.randn(2, 1, 31, 5)
    dc.set_dispatch('reference')
    assert dc._state['forced'] is None
    assert dc.plan_for(x, w) == dc.heuristic_plan(x, w)  # forced plan gone


def test_dispatch_context_sets_and_restores_mode_and_plan():
    p, q = Plan('fft', 'cl', 'cpp'), Plan('cl', 'cl', 'cl')
    before = dict(dc._state)
    with dispatch():
        assert dc._state == before  # changes nothing
    with dispatch(plan=p):
        assert dc._state == dict(before, forced=p)
        with dispatch('tune'):  # a mode switch drops a forced plan
            assert dc._state == dict(mode='tune', forced=None)
        with dispatch('reference', plan=q):
            assert dc._state == dict(mode='reference', forced=q)
        assert dc._state == dict(before, forced=p)
    assert dc._state == before
    with pytest.raises(RuntimeError, match='boom'):
        with dispatch('tune', plan=p):
            raise RuntimeError('boom')
    assert dc._state == before
    message = ("unknown strategies ['gpu', 'x'] in "
               "Plan(forward='nchw', input_grad='gpu', weight_grad='x'); "
               "valid are ['nchw', 'cl', 'fft', 'cpp', 'triton']")
    with pytest.raises(ValueError, match='^' + re.escape(message) + '$'):
        with dispatch(plan=Plan('nchw', 'gpu', 'x')):
            pass
    assert dc._state == before


def test_reference_mode_runs_plain_conv2d_uncropped_unless_a_plan_is_forced():
    x = torch.randn(1, 2, 6, 7, requires_grad=True)
    w = torch.randn(2, 1, 31, 5, requires_grad=True)
    b = torch.randn(2)
    with dispatch('reference'), OpLog() as log:
        y = depthwise_conv2d(x, w, b)
    assert type(y.grad_fn).__name__ == 'ConvolutionBackward0'
    assert ('aten::convolution', 'nchw') in log.ops
    assert_rel_close(y, oracle(x, w, b), 1e-5, 'reference')
    assert torch.equal(y, F.conv2d(x, w, b, padding=(15, 2), groups=2))
    # the uncropped 31x5 weight reaches F.conv2d
    assert y.grad_fn._saved_weight.shape == (2, 1, 31, 5)
    dc.set_dispatch('reference')
    try:
        with dispatch(plan=Plan('fft', 'fft', 'fft')), OpLog() as log:
            y = depthwise_conv2d(x, w, b)
    finally:
        dc.set_dispatch('heuristic')
    assert log.strategy() == 'fft'
    assert_rel_close(y, oracle(x, w, b), 1e-4, 'forced in reference mode')


def test_memory_format_of():
    x = torch.randn(2, 3, 4, 5)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert dc.memory_format_of(x) == torch.contiguous_format
    assert dc.memory_format_of(cl) == torch.channels_last
    # both formats at once (C = 1): reads as contiguous
    assert dc.memory_format_of(
        torch.randn(2, 1, 4, 5).contiguous(
            memory_format=torch.channels_last)) == torch.contiguous_format
    # neither (a strided slice) and not 4-D
    assert dc.memory_format_of(cl[:, :, ::2]) == torch.contiguous_format
    assert dc.memory_format_of(torch.randn(3, 4, 5)) == torch.contiguous_format
    assert dc.memory_format_of(
        torch.randn(2, 3, 4, 5, 6).contiguous(
            memory_format=torch.channels_last_3d)) == torch.contiguous_format


# ----------------------------------------------------------- heuristics
@pytest.mark.parametrize(
    'kh,kw,h,w,nchw_plan,cl_plan',
    [
        (3, 3, 56, 56, None, None),  # 9 taps: torch-only plan
        (9, 1, 56, 56, Plan('cl', 'cl', 'cl'), Plan('cl', 'cl', 'cl')),
        (11, 1, 56, 56, Plan('nchw', 'nchw', 'cpp'), Plan('cl', 'cl', 'cpp')),
        (11, 9, 8, 8, Plan('nchw', 'nchw', 'cpp'), Plan('cl', 'cl', 'cpp')),
        (101, 1, 8, 8, Plan('cpp', 'cpp', 'cpp'), Plan('cpp', 'cpp', 'cpp')),
        (101, 1, 7, 9, Plan('nchw', 'nchw', 'cpp'), Plan('cl', 'cl', 'cpp')),
        (11, 11, 8, 8, Plan('cpp', 'cpp', 'cpp'), Plan('cpp', 'cpp', 'cpp')),
    ])
def test_heuristic_plan_boundaries_with_the_compiled_kernel(
        kh, kw, h, w, nchw_plan, cl_plan):
    assert cpu_kernel.available(), cpu_kernel.error()
    assert dc.heuristic_plan(_map(h, w), _kernel(kh, kw)) == nchw_plan
    assert dc.heuristic_plan(_map(h, w, cl=True), _kernel(kh, kw)) == cl_plan


@pytest.mark.parametrize(
    'kh,kw,h,w,nchw_plan,cl_plan',
    [
        (7, 7, 56, 56, None, None),  # at most 7 taps per axis: native
        (101, 1, 8, 8, Plan('cl', 'cl', 'fft'), Plan('cl', 'cl', 'fft')),
        (11, 11, 8, 8, Plan('cl', 'cl', 'fft'), Plan('cl', 'cl', 'fft')),
        (11, 9, 8, 8, None, Plan('cl', 'cl', 'nchw')),  # 99 taps
        (101, 1, 7, 9, None, Plan('cl', 'cl', 'nchw')),  # 63 pixels
        (9, 3, 28, 28, Plan('cl', 'cl', 'cl'), Plan('cl', 'cl', 'cl')),
        (9, 3, 27, 29, None, Plan('cl', 'cl', 'nchw')),  # 783 pixels
    ])
def test_torch_only_plan_boundaries(monkeypatch, kh, kw, h, w, nchw_plan,
                                    cl_plan):
    for dtype in (torch.float32, torch.float16):
        # the kernel unavailable (fp32) or not for this dtype (fp16)
        with monkeypatch.context() as m:
            if dtype == torch.float32:
                m.setitem(cpu_kernel._state, 'loaded', False)
            for cl, plan in ((False, nchw_plan), (True, cl_plan)):
                x = _map(h, w, cl, dtype)
                assert dc.heuristic_plan(x, _kernel(kh, kw)) == plan
                assert dc._fallback_plan(x, _kernel(kh, kw)) == plan


def test_heuristic_plan_on_cuda_is_fixed_triton_strips_else_native(
        monkeypatch):
    """Without a GPU: a stand-in input whose device reads 'cuda'. The CUDA
    default is a rule per shape class, never timed."""
    fake = types.SimpleNamespace(
        device=types.SimpleNamespace(type='cuda'), shape=(2, 4, 56, 56))
    monkeypatch.setattr(dc, 'time_fn', None)  # any timing would raise
    monkeypatch.setattr(dc.triton_kernels, 'unavailable_reason', lambda x: None
                        if x is fake else 'not the input')
    triton = Plan('triton', 'triton', 'triton')
    assert dc.heuristic_plan(fake, _kernel(51, 5)) == triton
    assert dc.heuristic_plan(fake, _kernel(5, 51)) == triton
    assert dc.heuristic_plan(fake, _kernel(5, 5)) is None  # 25 taps
    assert dc.heuristic_plan(fake, _kernel(13, 5)) is None  # 65 taps
    small = types.SimpleNamespace(device=fake.device, shape=(2, 4, 7, 9))
    monkeypatch.setattr(dc.triton_kernels, 'unavailable_reason',
                        lambda x: None)
    assert dc.heuristic_plan(small, _kernel(51, 5)) is None  # 63 pixels
    small.shape = (2, 4, 8, 8)
    assert dc.heuristic_plan(small, _kernel(51, 5)) == triton
    monkeypatch.setattr(dc.triton_kernels, 'unavailable_reason',
                        lambda x: 'no triton')
    assert dc.heuristic_plan(fake, _kernel(51, 5)) is None
    assert dc.heuristic_plan(
        torch.empty(2, 4, 56, 56, device='meta'), _kernel(51, 5)) is None


@pytest.mark.cuda
def test_heuristic_plan_on_a_gpu_runs_triton_for_strips():
    """The CUDA rule on a real device (Triton available there)."""
    x = torch.randn(2, 8, 56, 56, device='cuda')
    w = torch.randn(8, 1, 51, 5, device='cuda')
    assert dc.heuristic_plan(x, w) == Plan('triton', 'triton', 'triton')


def test_candidate_strategies(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    assert dc.candidate_strategies(_map(4, 4)) == ('nchw', 'cl', 'fft', 'cpp')
    assert dc.candidate_strategies(_map(4, 4,
                                        dtype=torch.float16)) == ('nchw', 'cl',
                                                                  'fft')
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert dc.candidate_strategies(_map(4, 4)) == ('nchw', 'cl', 'fft', 'cpp',
                                                   'triton')


# --------------------------------------------------------------- tuning
COSTS = dict(
    forward=dict(nchw=3, cl=2, fft=1, cpp=4),
    input_grad=dict(nchw=2, cl=1, fft=3, cpp=4),
    weight_grad=dict(nchw=4, cl=3, fft=2, cpp=1))


@pytest.fixture
def fake_timer(monkeypatch):
    """tune_plan's timer replaced (timing is out of scope): each timed
    function runs once and costs what COSTS says for its pass."""
    monkeypatch.setattr(dc, '_tuned', collections.OrderedDict())
    monkeypatch.setattr(dc, 'candidate_strategies',
                        lambda x: tuple(COSTS['weight_grad']))
    timed = []
    real_timed_pass = dc._timed_pass

    def timed_pass(name, strategy, *tensors):
        fn = real_timed_pass(name, strategy, *tensors)
        return types.SimpleNamespace(fn=fn, name=name, strategy=strategy)

    def fake_time(call, min_run_time):
        # blocked_autorange (not a single call), briefly per candidate
        assert 0 < min_run_time <= 0.05
        if call.strategy != 'triton':  # (no Triton on this CPU)
            with OpLog() as log:
                call.fn()
            assert log.strategy() == call.strategy, call
        timed.append((call.name, call.strategy))
        return types.SimpleNamespace(median=COSTS[call.name][call.strategy])

    monkeypatch.setattr(dc, '_timed_pass', timed_pass)
    monkeypatch.setattr(dc, 'time_fn', fake_time)
    return timed


def test_tune_plan_keeps_each_pass_fastest_and_caches_per_key(fake_timer):
    x, w = _map(8, 8), _kernel(5, 3)
    plan = dc.tune_plan(x, w)
    assert plan == Plan('fft', 'cl', 'cpp')
    assert sorted(fake_timer) == sorted(
        (name, s) for name in COSTS for s in CPU_STRATEGIES)
    fake_timer.clear()
    assert dc.tune_plan(x, w) is plan and not fake_timer  # cached
    assert dc.tune_plan(x, w, with_grad=False) == Plan('fft', 'nchw', 'nchw')
    assert sorted(fake_timer) == [
        ('forward', s) for s in sorted(CPU_STRATEGIES)
    ]  # the gradient passes are never timed
    for other in [(x.double(), w.double()), (_map(8, 9), w), (x, _kernel(5,
                                                                         5)),
                  (_map(8, 8, c=2), _kernel(5, 3, c=2))]:
        fake_timer.clear()
        dc.tune_plan(*other, with_grad=False)
        assert len(fake_timer) == 4, other  # a new key: timed again
    assert len(dc._tuned) == 6


def test_tune_plan_times_random_data_like_the_inputs(monkeypatch, fake_timer):
    """Each pass is timed on (x, weight, output gradient) stand-ins of the
    inputs' dtype, device and shapes (random data, not the inputs)."""
    seen = []
    timed_pass = dc._timed_pass  # fake_timer's

    def spy(name, strategy, *tensors):
        seen.append([(t.dtype, t.device, tuple(t.shape)) for t in tensors])
        assert not any(t is u for t in tensors for u in (x, w))
        return timed_pass(name, strategy, *tensors)

    monkeypatch.setattr(dc, '_timed_pass', spy)
    x, w = _map(8, 9, dtype=torch.float64), _kernel(5, 3).double()
    dc.tune_plan(x, w)
    like = [(torch.float64, x.device, (2, 4, 8, 9)),
            (torch.float64, w.device, (4, 1, 5, 3)),
            (torch.float64, x.device, (2, 4, 8, 9))]
    assert seen == [like] * len(COSTS) * len(CPU_STRATEGIES)


@pytest.mark.cuda
def test_tune_plan_times_cuda_inputs_on_cuda(monkeypatch):
    """The random stand-ins (and their generator) live on the inputs'
    device: CPU data would time the wrong device."""
    monkeypatch.setattr(dc, '_tuned', collections.OrderedDict())
    devices = []
    timed_pass = dc._timed_pass

    def spy(name, strategy, *tensors):
        devices.extend(t.device.type for t in tensors)
        return timed_pass(name, strategy, *tensors)

    monkeypatch.setattr(dc, '_timed_pass', spy)
    monkeypatch.setattr(
        dc, 'time_fn',
        lambda fn, min_run_time: [fn()] and types.SimpleNamespace(median=1.))
    x = torch.randn(2, 4, 16, 16, device='cuda')
    dc.tune_plan(x, torch.randn(4, 1, 13, 5, device='cuda'))
    assert devices and set(devices) == {'cuda'}


def test_plan_for_forced_then_tuned_then_heuristic(fake_timer):
    x, w = _map(8, 8), _kernel(11, 1)
    heuristic = Plan('nchw', 'nchw', 'cpp')
    assert dc.plan_for(x, w) == dc.heuristic_plan(x, w) == heuristic
    with dispatch('tune'):
        # never tuned: the heuristic, and nothing is timed
        assert dc.plan_for(x, w) == heuristic and not fake_timer
        tuned = dc.tune_plan(x, w)
        fake_timer.clear()
        assert tuned != heuristic
        assert dc.plan_for(x, w) == tuned
        with torch.no_grad():  # tuned with gradients only
            assert dc.plan_for(x, w) == heuristic
        with dispatch(plan=Plan('fft', 'fft', 'fft')):
            assert dc.plan_for(x, w) == Plan('fft', 'fft', 'fft')
    assert dc.plan_for(x, w) == heuristic
    assert not fake_timer


def test_tuned_cache_is_bounded_lru(monkeypatch, fake_timer):
    monkeypatch.setattr(dc, 'TUNED_CACHE_SIZE', 2)
    a, b, c = ((_map(8, s), _kernel(5, 3)) for s in (8, 9, 10))
    dc.tune_plan(*a)
    dc.tune_plan(*b)
    dc.tune_plan(*a)  # a is now the most recently used
    dc.tune_plan(*c)  # evicts b
    assert len(dc._tuned) == 2
    fake_timer.clear()
    dc.tune_plan(*a)
    assert not fake_timer  # kept
    dc.tune_plan(*b)
    assert fake_timer  # evicted: timed again


def test_tuning_leaves_the_global_rng_alone(monkeypatch):
    monkeypatch.setattr(dc, '_tuned', collections.OrderedDict())
    monkeypatch.setattr(
        dc, 'time_fn',
        lambda fn, min_run_time: [fn()] and types.SimpleNamespace(median=1.))
    x, w = _map(8, 8), _kernel(5, 3)
    state = torch.get_rng_state()
    dc.tune_plan(x, w)
    assert torch.equal(torch.get_rng_state(), state)


def test_deterministic_algorithms_never_pick_triton_weight_grad(
        monkeypatch, fake_timer):
    fake = types.SimpleNamespace(
        device=types.SimpleNamespace(type='cuda'), shape=(2, 4, 56, 56))
    monkeypatch.setattr(dc.triton_kernels, 'unavailable_reason',
                        lambda x: None)
    monkeypatch.setattr(dc, '_warned', set())
    for name, cost in (('forward', 9), ('input_grad', 9), ('weight_grad', 0)):
        # Triton the first candidate: skipping it must not end the search
        monkeypatch.setitem(COSTS, name, dict(triton=cost, **COSTS[name]))
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        message = (
            'depthwise_conv2d: torch.use_deterministic_algorithms(True): the '
            "weight gradient runs 'nchw' (aten) instead of Triton, whose "
            'atomic accumulation is not deterministic')
        with pytest.warns(UserWarning, match='^' + re.escape(message) + '$'):
            assert dc.heuristic_plan(fake, _kernel(51, 5)) == Plan(
                'triton', 'triton', 'nchw')
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # said once, not per call
            assert dc.heuristic_plan(fake, _kernel(51, 5)).weight_grad == \
                'nchw'
            # tuning: Triton (the cheapest) is no weight-gradient candidate
            plan = dc.tune_plan(_map(8, 8), _kernel(5, 3))
        assert plan.weight_grad == 'cpp'
        assert ('weight_grad', 'triton') not in fake_timer
    finally:
        torch.use_deterministic_algorithms(old)
    # not deterministic: another cache key, Triton's weight gradient wins
    assert dc.tune_plan(_map(8, 8), _kernel(5, 3)).weight_grad == 'triton'


def test_tune_mode_with_checkpoint_times_nothing_in_forward(monkeypatch):
    """Issue 22 item 2: tuning inside a non-reentrant checkpoint's forward
    (then its recompute) raised CheckpointError. Plans are tuned ahead of
    time; the forward, the recompute and the backward only look them up."""
    x = torch.randn(1, 4, 16, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 13, 5, dtype=torch.float64, requires_grad=True)

    def block(a, b):
        return depthwise_conv2d(a, b).tanh()

    def step(cp):
        x.grad = w.grad = None
        y = checkpoint(block, x, w, use_reentrant=False) if cp else \
            block(x, w)
        y.sum().backward()
        return y.detach(), x.grad, w.grad

    with dispatch('tune'):
        monkeypatch.setattr(dc, 'time_fn', None)  # timing would raise
        first = step(cp=True)  # never tuned: the heuristic
        monkeypatch.undo()
        plan = tune_plan(x, w)
        assert all(s in CPU_STRATEGIES for s in plan)
        assert tune_plan(x, w) is plan
        assert plan_for(x, w) == plan
        monkeypatch.setattr(dc, 'time_fn', None)
        got = step(cp=True)
    expected = step(cp=False)
    for a, b_, r in zip(first, got, expected):
        torch.testing.assert_close(a, r)
        torch.testing.assert_close(b_, r)


# --------------------------------------------------------- input checks
def test_cpp_strategy_refuses_other_devices_and_dtypes():
    message = ("strategy 'cpp' runs on the CPU in (torch.float32, "
               'torch.bfloat16, torch.float64), got a {} {} tensor')
    with pytest.raises(
            ValueError,
            match='^' + re.escape(message.format('cpu', 'torch.float16')) +
            '$'):
        with dispatch(plan=Plan('cpp', 'nchw', 'nchw')):
            depthwise_conv2d(
                torch.randn(1, 2, 5, 5).half(),
                torch.randn(2, 1, 3, 3).half())
    with pytest.raises(
            ValueError,
            match='^' + re.escape(message.format('meta', 'torch.float32')) +
            '$'):
        dc._check_strategy('cpp', torch.empty(1, 2, 5, 5, device='meta'))
    for strategy in ('nchw', 'cl', 'fft', 'cpp'):
        dc._check_strategy(strategy, torch.randn(1, 2, 5, 5))


def test_cpp_strategy_without_the_kernel_says_why(monkeypatch):
    monkeypatch.setitem(cpu_kernel._state, 'loaded', False)
    monkeypatch.setitem(cpu_kernel._state, 'error', 'no compiler')
    message = ("strategy 'cpp' asked for, but the compiled CPU kernel is "
               'unavailable: no compiler')
    for plan in (Plan('cpp', 'nchw',
                      'nchw'), Plan('nchw', 'cpp',
                                    'nchw'), Plan('nchw', 'nchw', 'cpp')):
        x = torch.randn(1, 2, 5, 5, requires_grad=True)
        w = torch.randn(2, 1, 3, 3, requires_grad=True)
        with pytest.raises(RuntimeError, match='^' + re.escape(message) + '$'):
            with dispatch(plan=plan):
                depthwise_conv2d(x, w).sum().backward()


def test_triton_strategy_without_triton_says_why(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    reason = dc.triton_kernels.unavailable_reason(torch.randn(1))
    assert reason
    with pytest.raises(
            RuntimeError,
            match='^' + re.escape(f"strategy 'triton' asked for: {reason}") +
            '$'):
        with dispatch(plan=Plan('triton', 'nchw', 'nchw')):
            depthwise_conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3))


@pytest.mark.parametrize('w_shape,b_shape,match', [
    ((3, 1, 5), None, r'a weight of shape \(C, 1, kh, kw\) with C = '
     r'x.shape\[1\] = 3, got \(3, 1, 5\)$'),
    ((3, 2, 5, 5), None, r'got \(3, 2, 5, 5\)$'),
    ((4, 1, 5, 5), None, r'got \(4, 1, 5, 5\)$'),
    ((3, 1, 4, 5), None, r'^depthwise_conv2d needs odd kernel sizes for '
     r'"same" padding, got 4x5$'),
    ((3, 1, 5, 4), None, r'got 5x4$'),
    ((3, 1, 5, 5), (3, 1), r'^bias must have shape \(3,\), got \(3, 1\)$'),
    ((3, 1, 5, 5), (4, ), r'got \(4,\)$'),
])
def test_bad_shapes_are_refused_naming_the_problem(w_shape, b_shape, match):
    x = torch.randn(2, 3, 8, 8)
    b = None if b_shape is None else torch.randn(b_shape)
    with pytest.raises(ValueError, match=match):
        depthwise_conv2d(x, torch.randn(w_shape), b)


def test_three_d_input_is_refused():
    with pytest.raises(
            ValueError,
            match=r'^depthwise_conv2d expects x of shape \(N, C, H, W\), '
            r'got \(3, 8, 8\)$'):
        depthwise_conv2d(torch.randn(3, 8, 8), torch.randn(3, 1, 5, 5))


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


# ----------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize(
    'case',
    sampled_cases(20, seed=11, strategies=('nchw', 'cl', 'fft', 'triton')))
def test_sweep_cuda(case, monkeypatch):
    *shape, cl, plan = case
    # exact fp32 in cuDNN for this test only (monkeypatch restores it)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    run_case(*shape, cl, plan, device='cuda')


@pytest.mark.cuda
def test_autocast_fp16_cuda():
    x = torch.randn(2, 8, 56, 56, device='cuda')
    w = (torch.randn(8, 1, 51, 5, device='cuda') / 16).requires_grad_()
    with torch.autocast('cuda', dtype=torch.float16):
        y = depthwise_conv2d(x, w)
    assert y.dtype == torch.float16
    assert_rel_close(y.float(), oracle(x, w.detach()), 5e-3, 'fp16 output')


# -------------------------------------------------------- torch.compile
@pytest.mark.parametrize('plan', ['nchw,cl,fft', 'cpp,cpp,cpp', 'cl,fft,nchw'])
def test_custom_ops_pass_opcheck(plan):
    """Schema, fake (meta) implementations and autograd registration are
    consistent with the real ops (torch.library.opcheck)."""
    if 'cpp' in plan and not cpu_kernel.available():
        pytest.skip('compiled CPU kernel unavailable')
    x = torch.randn(2, 3, 9, 10, requires_grad=True)
    w = torch.randn(3, 1, 7, 5, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    for args in [(x, w, b, plan),
                 (x.detach().contiguous(
                     memory_format=torch.channels_last).requires_grad_(), w,
                  None, plan)]:
        torch.library.opcheck(dc._forward_op, args)
    g = torch.randn(2, 3, 9, 10)
    torch.library.opcheck(dc._input_grad_op,
                          (g, w.detach(), x.detach(), plan.split(',')[1]))
    torch.library.opcheck(dc._weight_grad_op,
                          (g, x.detach(), w.detach(), plan.split(',')[2]))


def test_compiled_slak_has_no_graph_break_and_matches_eager():
    """Issue 22 item 6: torch.compile traces a whole (tiny) SLaK, large
    kernels, crop and plan choice included, as one graph, and computes
    what eager does (outputs and every parameter's gradient)."""
    import torch._dynamo

    from mmslak.models.backbones.slak import SLaK
    torch.manual_seed(0)
    model = SLaK(
        arch=dict(depths=[1, 1, 1, 1], dims=[8, 8, 16, 16]),
        kernel_sizes=(13, 11, 9, 7),
        width_factor=1.0,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False)
    x = torch.randn(2, 3, 64, 64)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1

    def step(m):
        model.zero_grad()
        outs = m(x)
        sum((o * o).mean() for o in outs).backward()
        return [o.detach()
                for o in outs] + [p.grad.clone() for p in model.parameters()]

    eager = step(model)
    compiled = step(torch.compile(model, backend='aot_eager', fullgraph=True))
    assert len(compiled) == len(eager)
    for c, e in zip(compiled, eager):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-6)
