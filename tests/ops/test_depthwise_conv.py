"""Numerics of mmslak.ops.depthwise_conv2d against F.conv2d.

Every strategy, layout and kernel crop must give the function F.conv2d
computes, with the same gradients. The reference runs in float64, so the
fp32 tolerance (1e-4 relative) measures our error alone.
"""
import random

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mmslak.ops import (Plan, cpu_kernel, cropped_kernel_size,
                        depthwise_conv2d, dispatch, get_dispatch,
                        heuristic_plan, plan_for, set_dispatch, tune_plan)

STRATEGIES = ('nchw', 'cl', 'fft', 'cpp')  # the CPU's


def reference(x, w, b=None):
    kh, kw = w.shape[-2:]
    return F.conv2d(x, w, b, padding=(kh // 2, kw // 2), groups=x.shape[1])


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
    x = torch.randn(n, c, h, w, dtype=dtype, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wt = torch.randn(c, 1, kh, kw, dtype=dtype, device=device) / (kh * kw)**.5
    b = torch.randn(c, dtype=dtype, device=device) if bias else None
    g = torch.randn(n, c, h, w, dtype=dtype, device=device)
    leaves = [
        t.detach().clone().requires_grad_() for t in (x, wt, b)
        if t is not None
    ]
    refs = [t.detach().double().requires_grad_() for t in leaves]
    with dispatch(plan=plan):
        y = depthwise_conv2d(*leaves)
    y.backward(g)
    y_ref = reference(*refs)
    y_ref.backward(g.double())
    case = (f'x={n}x{c}x{h}x{w} k={kh}x{kw} cl={channels_last} '
            f'plan={plan}')
    assert y.dtype == dtype and y.shape == x.shape, case
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), case
    assert_rel_close(y, y_ref, rtol, 'output ' + case)
    for name, a, r in zip(('grad_x', 'grad_w', 'grad_b'), leaves, refs):
        assert_rel_close(a.grad, r.grad, rtol, f'{name} {case}')
    assert leaves[0].grad.is_contiguous(memory_format=fmt), case


def sampled_cases(num, seed, max_work=1.5e7, strategies=STRATEGIES):
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


@pytest.mark.parametrize('case', sampled_cases(60, seed=7))
def test_sweep_fp32(case):
    *shape, cl, plan = case
    run_case(*shape, cl, plan)


@pytest.mark.parametrize('plan', [None] + [Plan(s, s, s) for s in STRATEGIES])
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


def test_crop_is_exact_and_zeroes_outer_taps():
    x = torch.randn(2, 3, 6, 20)
    w = torch.randn(3, 1, 31, 5, requires_grad=True)
    assert cropped_kernel_size(31, 5, 6, 20) == (11, 5)
    y = depthwise_conv2d(x, w)
    torch.testing.assert_close(
        y, reference(x, w.detach()), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert torch.all(w.grad[:, :, :10] == 0)
    assert torch.all(w.grad[:, :, 21:] == 0)
    assert w.grad[:, :, 10:21].abs().sum() > 0


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
        y_native = reference(x, w.detach())
    assert y.dtype == torch.bfloat16 == y_native.dtype
    g = torch.randn_like(x)
    y.float().backward(g)
    assert w.grad.dtype == torch.float32 and xr.grad.dtype == torch.float32
    x64 = x.double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    y64 = reference(x64, w64)
    y64.backward(g.double())
    assert_rel_close(y_native.float(), y64, 2e-2, 'native bf16 conv2d')
    assert_rel_close(y.float(), y64, 2e-2, 'bf16 output')
    assert_rel_close(xr.grad, x64.grad, 2e-2, 'bf16 grad_x')
    assert_rel_close(w.grad, w64.grad, 2e-2, 'bf16 grad_w')


def test_reference_mode_is_plain_conv2d():
    x = torch.randn(2, 3, 9, 9)
    w = torch.randn(3, 1, 31, 5)
    with dispatch('reference'):
        assert get_dispatch() == 'reference'
        y = depthwise_conv2d(x, w)
    assert get_dispatch() != 'reference'
    assert torch.equal(y, reference(x, w))


def test_heuristic_plans():
    assert cpu_kernel.available(), cpu_kernel.error()
    x = torch.randn(2, 8, 56, 56)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    # Small kernels: native passes in the input's layout, compiled weight
    # gradient; 3x3 fully native.
    assert heuristic_plan(x, torch.randn(8, 1, 5,
                                         5)) == Plan('nchw', 'nchw', 'cpp')
    assert heuristic_plan(x_cl, torch.randn(8, 1, 3, 3)) is None
    assert heuristic_plan(x_cl, torch.randn(8, 1, 5,
                                            5)) == Plan('cl', 'cl', 'cpp')
    for xx in (x, x_cl):
        assert heuristic_plan(xx, torch.randn(8, 1, 51,
                                              5)) == Plan('cpp', 'cpp', 'cpp')
    # fp16 is not the compiled kernel's: the torch-only plan.
    assert heuristic_plan(x.half(), torch.randn(8, 1, 51, 5).half()) == \
        Plan('cl', 'cl', 'fft')
    small_map = torch.randn(2, 8, 7, 7)
    assert heuristic_plan(small_map,
                          torch.randn(8, 1, 13,
                                      5)) == Plan('nchw', 'nchw', 'cpp')
    if torch.cuda.is_available():  # weight and input on the GPU
        assert heuristic_plan(x.cuda(),
                              torch.randn(8, 1, 51, 5).cuda()) == Plan(
                                  'triton', 'triton', 'triton')


def test_heuristic_plans_without_compiled_kernel(monkeypatch):
    monkeypatch.setitem(cpu_kernel._state, 'loaded', False)
    x = torch.randn(2, 8, 56, 56)
    assert heuristic_plan(x, torch.randn(8, 1, 5, 5)) is None
    assert heuristic_plan(x, torch.randn(8, 1, 3, 3)) is None
    assert heuristic_plan(x, torch.randn(8, 1, 51,
                                         5)) == Plan('cl', 'cl', 'fft')
    k13 = torch.randn(8, 1, 13, 5)
    small_map = torch.randn(2, 8, 7, 7)
    assert heuristic_plan(small_map, k13) is None
    small_map = small_map.contiguous(memory_format=torch.channels_last)
    assert heuristic_plan(small_map, k13) == Plan('cl', 'cl', 'nchw')
    assert heuristic_plan(small_map, torch.randn(8, 1, 5, 5)) is None
    assert heuristic_plan(x, torch.randn(8, 1, 13,
                                         3)) == Plan('cl', 'cl', 'cl')


def test_tune_mode_with_checkpoint_times_nothing_in_forward(monkeypatch):
    """Issue 22 item 2: tuning inside a non-reentrant checkpoint's forward
    (then its recompute) raised CheckpointError. Plans are tuned ahead of
    time; the forward, the recompute and the backward only look them up."""
    from mmslak.ops import depthwise_conv as dc
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
        assert all(s in STRATEGIES for s in plan)
        assert tune_plan(x, w) is plan
        assert plan_for(x, w) == plan
        monkeypatch.setattr(dc, 'time_fn', None)
        got = step(cp=True)
    expected = step(cp=False)
    for a, b_, r in zip(first, got, expected):
        torch.testing.assert_close(a, r)
        torch.testing.assert_close(b_, r)


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match='odd kernel'):
        depthwise_conv2d(x, torch.randn(3, 1, 4, 5))
    with pytest.raises(ValueError, match=r'\(C, 1, kh, kw\)'):
        depthwise_conv2d(x, torch.randn(4, 1, 5, 5))
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        depthwise_conv2d(x[0], torch.randn(3, 1, 5, 5))
    with pytest.raises(ValueError, match='bias'):
        depthwise_conv2d(x, torch.randn(3, 1, 5, 5), torch.randn(4))
    with pytest.raises(ValueError, match='dispatch mode'):
        set_dispatch('fastest')
    with pytest.raises(ValueError, match='unknown strategies'):
        with dispatch(plan=Plan('nchw', 'gpu', 'fft')):
            pass


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
    assert_rel_close(y.float(), reference(x.double(),
                                          w.detach().double()), 5e-3,
                     'fp16 output')


# ------------------------------------------------------- torch.compile
@pytest.mark.parametrize('plan', ['nchw,cl,fft', 'cpp,cpp,cpp', 'cl,fft,nchw'])
def test_custom_ops_pass_opcheck(plan):
    """Schema, fake (meta) implementations and autograd registration are
    consistent with the real ops (torch.library.opcheck)."""
    from mmslak.ops import depthwise_conv as dc
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
