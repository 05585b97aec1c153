"""The op's crop, plans, dispatch and autograd Function against independent
oracles, with the pass that ran asserted (mutation testing, issue 12).

Oracle: float64 ``F.conv2d`` with the uncropped kernel and "same" padding;
crop sizes by hand (a K kernel on a map of size H can use min(K, 2H - 1)
taps). Which strategy ran each pass is read off the aten ops the pass
dispatched (:class:`OpLog`): an FFT pass calls ``_fft_r2c``, the compiled
kernel counts a call, a direct pass ``convolution`` (forward, input
gradient) or ``convolution_backward`` (weight gradient) on a tensor laid out
channels_last (``'cl'``) or NCHW (``'nchw'``).
"""
import collections
import re
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from test_depthwise_conv import assert_rel_close
from torch.utils._python_dispatch import TorchDispatchMode

from mmslak.ops import cpu_kernel
from mmslak.ops import depthwise_conv as dc
from mmslak.ops.depthwise_conv import Plan, depthwise_conv2d, dispatch

CPU_STRATEGIES = ('nchw', 'cl', 'fft', 'cpp')


def _layout_name(t):
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        return None
    if t.is_contiguous():
        return 'nchw'
    return 'cl' if t.is_contiguous(
        memory_format=torch.channels_last) else 'strided'


class OpLog(TorchDispatchMode):
    """Names of the aten ops run, with the memory format of each op's
    first tensor argument (and second, for a weight gradient)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        if func.namespace == 'mmslak':
            # our custom ops are opaque to a mode (re-entering one below
            # autograd loses lazy views): the spy in __enter__ logs the
            # strategy their pass ran
            self.ops.append((func.name(), None))
            return func(*args, **(kwargs or {}))
        # a weight gradient's layout is that of both grad and x
        n_args = 2 if func.name() == 'aten::convolution_backward' else 1
        for t in args[:n_args]:
            self.ops.append((func.name(), _layout_name(t)))
        return func(*args, **(kwargs or {}))

    # the compiled kernel's ops do not reach a dispatch mode: count calls
    def __enter__(self):
        self.cpp_calls = cpu_kernel.calls()
        self.custom, real = None, dc._direct_if_not_finite
        self._real = real

        def spy(strategy, *tensors):
            self.custom = real(strategy, *tensors)
            return self.custom

        dc._direct_if_not_finite = spy
        return super().__enter__()

    def __exit__(self, *exc):
        self.cpp_calls = cpu_kernel.calls() - self.cpp_calls
        dc._direct_if_not_finite = self._real
        return super().__exit__(*exc)

    def strategy(self):
        """The one strategy these ops were run by."""
        names = [n for n, _ in self.ops]
        if self.custom:
            return self.custom
        if self.cpp_calls:
            return 'cpp'
        if 'aten::_fft_r2c' in names:
            return 'fft'
        convs = {
            lay
            for n, lay in self.ops
            if n in ('aten::convolution', 'aten::conv2d',
                     'aten::convolution_backward')
        }
        assert len(convs) == 1, self.ops
        return convs.pop()


def oracle(x, w, b=None):
    """float64 F.conv2d, uncropped kernel, 'same' padding."""
    kh, kw = w.shape[-2:]
    return F.conv2d(
        x.double(),
        w.double(),
        None if b is None else b.double(),
        padding=(kh // 2, kw // 2),
        groups=x.shape[1])


def _inputs(n, c, h, w, kh, kw, cl, dtype):
    x = torch.randn(n, c, h, w).to(dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(c, 1, kh, kw) / (kh * kw)**.5).to(dtype)
    b = torch.randn(c).to(dtype)
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


def oracle_grads(x, w, b, g):
    leaves = [t.detach().double().requires_grad_() for t in (x, w, b)]
    y = oracle(*leaves)
    y.backward(g.double())
    return y, [t.grad for t in leaves]


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
            assert not bwd.cpp_calls and not any(
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


# ------------------------------------------------------ plan from the env
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


# ------------------------------------------------------- dispatch state
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


def test_reference_mode_runs_plain_conv2d_uncropped_unless_a_plan_is_forced():
    x = torch.randn(1, 2, 6, 7, requires_grad=True)
    w = torch.randn(2, 1, 31, 5, requires_grad=True)
    b = torch.randn(2)
    with dispatch('reference'), OpLog() as log:
        y = depthwise_conv2d(x, w, b)
    assert type(y.grad_fn).__name__ == 'ConvolutionBackward0'
    assert ('aten::convolution', 'nchw') in log.ops
    assert_rel_close(y, oracle(x, w, b), 1e-5, 'reference')
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


# ---------------------------------------------------- strategies' checks
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


# ---------------------------------------------------------------- checks
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
def test_empty_batch_with_bias_is_bias_shaped_and_attached(plan):
    x = torch.randn(0, 3, 4, 4, requires_grad=True)
    w = torch.randn(3, 1, 5, 5, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    with dispatch(plan=plan):
        y = depthwise_conv2d(x, w, b)
        y0 = depthwise_conv2d(x, w)
    assert y.shape == y0.shape == (0, 3, 4, 4)
    (y.sum() + y0.sum()).backward()
    assert torch.equal(w.grad, torch.zeros_like(w))
    assert torch.equal(b.grad, torch.zeros_like(b))


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


# ------------------------------------------------------------ heuristics
def _map(h, w, cl=False, dtype=torch.float32, c=4):
    x = torch.randn(2, c, h, w, dtype=dtype)
    return x.contiguous(memory_format=torch.channels_last) if cl else x


def _kernel(kh, kw, c=4):
    return torch.randn(c, 1, kh, kw)


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


def test_deterministic_algorithms_never_pick_triton_weight_grad(
        monkeypatch, fake_timer):
    fake = types.SimpleNamespace(
        device=types.SimpleNamespace(type='cuda'), shape=(2, 4, 56, 56))
    monkeypatch.setattr(dc.triton_kernels, 'unavailable_reason',
                        lambda x: None)
    monkeypatch.setattr(dc, '_warned', set())
    for name, cost in (('forward', 9), ('input_grad', 9), ('weight_grad', 0)):
        monkeypatch.setitem(COSTS, name, dict(COSTS[name], triton=cost))
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.warns(UserWarning, match='deterministic'):
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


def test_candidate_strategies(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    assert dc.candidate_strategies(_map(4, 4)) == ('nchw', 'cl', 'fft', 'cpp')
    assert dc.candidate_strategies(_map(4, 4,
                                        dtype=torch.float16)) == ('nchw', 'cl',
                                                                  'fft')
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert dc.candidate_strategies(_map(4, 4)) == ('nchw', 'cl', 'fft', 'cpp',
                                                   'triton')


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
        assert min_run_time > 0  # blocked_autorange, not a single call
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


# ------------------------------------------------- autocast like conv2d
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
