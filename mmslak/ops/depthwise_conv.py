"""Depthwise "same" convolution with odd, possibly rectangular kernels.

This is the single entry point the SLaK large-kernel layer calls, so the way
it is computed is chosen in one place. Three things make it fast without any
compiled extension:

* **Exact kernel crop.** A tap further than ``H - 1`` rows (``W - 1``
  columns) from the centre only ever meets zero padding, so a kernel taller
  than ``2H - 1`` (wider than ``2W - 1``) is cropped to that size. Outputs are
  identical and the cropped-away taps get a zero gradient, as they do in the
  reference computation.
* **Per-pass strategies.** The forward pass, the input gradient and the
  weight gradient are three separate computations, each run by whichever of
  ``'nchw'`` (direct convolution, contiguous), ``'cl'`` (direct, channels_last)
  or ``'fft'`` (see :mod:`mmslak.ops.fft_conv`) is fastest for its shape.
  On the CPU the direct forward is fast in channels_last, but the weight
  gradient of a large depthwise kernel runs far below peak in oneDNN, and its
  FFT formulation is several times faster: that "hybrid" is the usual plan.
* **Dispatch.** :func:`plan_for` picks a :class:`Plan` per (device, dtype,
  shape) with a fixed, measured heuristic per shape class (the default, on
  the CPU and on CUDA alike: every run and every DDP rank computes the same
  way). Timing candidates happens only on request, ahead of time, through
  :func:`tune_plan`; in ``'tune'`` mode :func:`plan_for` uses the plans so
  tuned (heuristic for shapes never tuned). Nothing is ever timed inside a
  model's forward (a checkpoint's recompute would recurse).

``set_dispatch('reference')`` (or the context manager :func:`dispatch`)
turns all of it off: plain NCHW ``F.conv2d`` as in the reference code, which
the benchmark and the tests compare against.
"""
import contextlib
import os
import warnings
from collections import OrderedDict
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from . import cpu_kernel, triton_kernels
from .fft_conv import (fft_forward, fft_input_grad, fft_shape, fft_weight_grad,
                       kernel_spectrum)
from .timing import time_fn

_MODES = ('heuristic', 'tune', 'reference')
_PASS_STRATEGIES = ('nchw', 'cl', 'fft', 'cpp', 'triton')


class Plan(NamedTuple):
    """How each pass of one convolution is computed: each field is one of
    ``'nchw'``, ``'cl'`` (channels_last), ``'fft'``, ``'cpp'`` (the compiled
    CPU kernel, :mod:`mmslak.ops.cpu_kernel`) or ``'triton'`` (CUDA,
    :mod:`mmslak.ops.triton_kernels`)."""
    forward: str = 'nchw'
    input_grad: str = 'nchw'
    weight_grad: str = 'nchw'


def _plan_from_env() -> Optional[Plan]:
    # MMSLAK_DWCONV_PLAN=forward,input_grad,weight_grad forces one plan
    # everywhere (for benchmarking a strategy across a whole model).
    text = os.environ.get('MMSLAK_DWCONV_PLAN')
    if not text:
        return None
    parts = text.split(',')
    if len(parts) != 3 or any(p not in _PASS_STRATEGIES for p in parts):
        raise ValueError(f'MMSLAK_DWCONV_PLAN must be three of '
                         f'{list(_PASS_STRATEGIES)} joined by commas, got '
                         f'{text!r}')
    return Plan(*parts)


_state = dict(
    mode=os.environ.get('MMSLAK_DWCONV_DISPATCH', 'heuristic'),
    forced=_plan_from_env())
if _state['mode'] not in _MODES:
    raise ValueError(f'MMSLAK_DWCONV_DISPATCH must be one of {list(_MODES)}'
                     f', got {_state["mode"]!r}')
# Plans tuned by tune_plan, least recently used first; bounded so that
# varying input sizes (detection) cannot grow it without limit.
TUNED_CACHE_SIZE = 256
_tuned: 'OrderedDict[tuple, Plan]' = OrderedDict()
_warned = set()


def set_dispatch(mode: str) -> None:
    """Select how plans are chosen: ``'heuristic'`` (default), ``'tune'``
    (the plans :func:`tune_plan` timed ahead of time, the heuristic for
    shapes it did not see) or
    ``'reference'`` (plain NCHW ``F.conv2d``, no crop).

    The environment variable ``MMSLAK_DWCONV_DISPATCH`` sets the initial
    mode. Like :func:`dispatch`, a mode switch drops a forced plan (also
    one from ``MMSLAK_DWCONV_PLAN``).
    """
    if mode not in _MODES:
        raise ValueError(f'unknown dispatch mode {mode!r}; valid modes are '
                         f'{list(_MODES)}')
    _state.update(mode=mode, forced=None)


def get_dispatch() -> str:
    return _state['mode']


@contextlib.contextmanager
def dispatch(mode: Optional[str] = None, plan: Optional[Plan] = None):
    """Temporarily set the dispatch mode, or force one :class:`Plan` for
    every call (used by tests and benchmarks). ``dispatch()`` changes
    nothing."""
    if plan is not None:
        bad = [s for s in plan if s not in _PASS_STRATEGIES]
        if bad:
            raise ValueError(f'unknown strategies {bad} in {plan}; valid '
                             f'are {list(_PASS_STRATEGIES)}')
    old = dict(_state)
    try:
        if mode is not None:
            set_dispatch(mode)  # drops a forced plan
            _state['forced'] = plan
        elif plan is not None:
            _state['forced'] = plan
        yield
    finally:
        _state.update(old)


def cropped_kernel_size(kh: int, kw: int, h: int, w: int) -> Tuple[int, int]:
    """The part of a (kh, kw) kernel that can overlap an (h, w) map (one
    tap of an empty map's)."""
    return min(kh, max(1, 2 * h - 1)), min(kw, max(1, 2 * w - 1))


# ----------------------------------------------------------------- passes
def _layout(x: torch.Tensor, strategy: str) -> torch.Tensor:
    if strategy == 'cl':
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` if ``x`` is (only) channels_last."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _like(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``y`` in the memory format of ``ref`` (channels_last or not)."""
    return y.contiguous(memory_format=memory_format_of(ref))


def _pad(weight: torch.Tensor) -> Tuple[int, int]:
    return weight.shape[-2] // 2, weight.shape[-1] // 2


def _fft_dtype(x: torch.Tensor) -> torch.dtype:
    # CPU FFTs need fp32/fp64, cuFFT takes half only for power-of-2 sizes:
    # compute low-precision inputs in fp32.
    return x.dtype if x.dtype in (torch.float32, torch.float64) else \
        torch.float32


def _check_strategy(strategy: str, x: torch.Tensor) -> None:
    if strategy == 'cpp':
        if x.device.type != 'cpu' or x.dtype not in cpu_kernel.DTYPES:
            raise ValueError(f"strategy 'cpp' runs on the CPU in "
                             f'{cpu_kernel.DTYPES}, got a {x.device.type} '
                             f'{x.dtype} tensor')
        if not cpu_kernel.available():
            raise RuntimeError("strategy 'cpp' asked for, but the compiled "
                               f'CPU kernel is unavailable: '
                               f'{cpu_kernel.error()}')
    elif strategy == 'triton':
        problem = triton_kernels.unavailable_reason(x)
        if problem:
            raise RuntimeError(f"strategy 'triton' asked for: {problem}")


def _direct_if_not_finite(strategy: str, *tensors) -> str:
    """An FFT mixes every pixel of a map into every output pixel, so one
    NaN/Inf input would make the whole channel NaN, where ``F.conv2d``
    keeps it to the kernel's footprint. Non-finite inputs therefore run the
    pass directly (``'nchw'``: values stay local, as in ``F.conv2d``), with
    a warning; finite inputs keep the FFT."""
    if strategy != 'fft' or all(
            bool(torch.isfinite(t).all()) for t in tensors):
        return strategy
    warnings.warn(
        'depthwise_conv2d: non-finite (NaN/Inf) values in the input of an '
        "FFT pass; running it as a direct convolution ('nchw') so that they "
        'stay local', RuntimeWarning)
    return 'nchw'


def _forward_pass(x, weight, bias, strategy, size):
    """y and, for an FFT forward, the kernel's spectrum."""
    strategy = _direct_if_not_finite(strategy, x, weight)
    _check_strategy(strategy, x)
    if strategy == 'fft':
        dt = _fft_dtype(x)
        w_spec = kernel_spectrum(weight.to(dt), size)
        y = fft_forward(x.to(dt), w_spec, size).to(x.dtype)
        if bias is not None:
            y = y + bias.to(y.dtype).view(1, -1, 1, 1)
        return y, w_spec
    if strategy == 'cpp':
        return cpu_kernel.forward(x, weight, bias), None
    if strategy == 'triton':
        return triton_kernels.forward(x, weight, bias), None
    return F.conv2d(
        _layout(x, strategy),
        weight,
        bias,
        padding=_pad(weight),
        groups=weight.shape[0]), None


def _input_grad_pass(grad, weight, strategy, size, w_spec):
    strategy = _direct_if_not_finite(strategy, grad, weight)
    _check_strategy(strategy, grad)
    if strategy == 'fft':
        dt = _fft_dtype(grad)
        if w_spec is None:
            w_spec = kernel_spectrum(weight.to(dt), size)
        return fft_input_grad(grad.to(dt), w_spec, size)
    if strategy == 'cpp':
        return cpu_kernel.forward(grad, weight, flip=True)
    if strategy == 'triton':
        return triton_kernels.forward(grad, weight, flip=True)
    # The input gradient of a stride-1 same-padded correlation is the same
    # correlation with the kernel flipped.
    return F.conv2d(
        _layout(grad, strategy),
        weight.flip(-2, -1),
        padding=_pad(weight),
        groups=weight.shape[0])


def _weight_grad_pass(grad, x, weight, strategy, size):
    strategy = _direct_if_not_finite(strategy, grad, x)
    _check_strategy(strategy, x)
    kh, kw = weight.shape[-2:]
    if strategy == 'fft':
        dt = _fft_dtype(x)
        return fft_weight_grad(
            x.to(dt).contiguous(),
            grad.to(dt).contiguous(), kh, kw, size)
    if strategy == 'cpp':
        return cpu_kernel.weight_grad(grad, x, kh, kw)
    if strategy == 'triton':
        return triton_kernels.weight_grad(grad, x, kh, kw)
    return torch.ops.aten.convolution_backward(
        _layout(grad, strategy), _layout(x, strategy), weight, None, (1, 1),
        _pad(weight), (1, 1), False, (0, 0), weight.shape[0],
        (False, True, False))[1]


# The three passes are torch.library custom ops with fake (shape-only)
# implementations, so that torch.compile traces SLaK without graph breaks
# (and CUDA graphs can capture it): torch has no depthwise op with per-pass
# strategies, hence our own ops.
@torch.library.custom_op('mmslak::dwconv_forward', mutates_args=())
def _forward_op(x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor], plan: str) -> torch.Tensor:
    """``plan``: the :class:`Plan`'s strategies joined by commas."""
    size = fft_shape(*x.shape[-2:], *weight.shape[-2:])
    return _like(
        _forward_pass(x, weight, bias,
                      plan.split(',')[0], size)[0], x)


@_forward_op.register_fake
def _forward_fake(x, weight, bias, plan):
    return torch.empty(
        x.shape,
        dtype=x.dtype,
        device=x.device,
        memory_format=memory_format_of(x))


@torch.library.custom_op('mmslak::dwconv_input_grad', mutates_args=())
def _input_grad_op(grad: torch.Tensor, weight: torch.Tensor, x: torch.Tensor,
                   strategy: str) -> torch.Tensor:
    size = fft_shape(*x.shape[-2:], *weight.shape[-2:])
    grad_x = _input_grad_pass(grad, weight, strategy, size, None)
    return _like(grad_x.to(x.dtype), x)


@_input_grad_op.register_fake
def _input_grad_fake(grad, weight, x, strategy):
    return _forward_fake(x, weight, None, strategy)


@torch.library.custom_op('mmslak::dwconv_weight_grad', mutates_args=())
def _weight_grad_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                    strategy: str) -> torch.Tensor:
    size = fft_shape(*x.shape[-2:], *weight.shape[-2:])
    grad_w = _weight_grad_pass(grad, x, weight, strategy, size)
    return grad_w.to(weight.dtype).reshape(weight.shape).contiguous()


@_weight_grad_op.register_fake
def _weight_grad_fake(grad, x, weight, strategy):
    return weight.new_empty(weight.shape)


def _setup_context(ctx, inputs, output):
    x, weight, bias, plan = inputs
    ctx.plan = Plan(*plan.split(','))
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight)


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = _input_grad_op(grad, weight, x, ctx.plan[1])
    if ctx.needs_input_grad[1]:
        grad_w = _weight_grad_op(grad, x, weight, ctx.plan[2])
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = grad.sum(dim=(0, 2, 3))
    return grad_x, grad_w, grad_b, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def _apply(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
           plan: Plan) -> torch.Tensor:
    """The convolution with its passes run as ``plan`` says."""
    return _forward_op(x, weight, bias, ','.join(plan))


# --------------------------------------------------------------- dispatch
def _shape_key(x: torch.Tensor, weight: torch.Tensor) -> tuple:
    return (x.device.type, x.dtype, tuple(x.shape), tuple(weight.shape))


def heuristic_plan(x: torch.Tensor, weight: torch.Tensor) -> Optional[Plan]:
    """The default plan; ``None`` means plain ``F.conv2d`` (native autograd,
    in the layout the input comes in).

    From measurements on the CPU (SLaK-T shapes, ``benchmark.py``'s per-pass
    table, see the README), with the compiled kernel
    (:mod:`mmslak.ops.cpu_kernel`):

    * kernels with >= 100 taps on maps of >= 64 pixels (every SLaK-T strip
      up to stage 3): all three passes compiled (its weight gradient runs
      3-10x faster than the FFT, which was 2-10x faster than oneDNN's);
    * other kernels of more than 9 taps (the 5x5, stage 4's 13x5 on 7x7
      maps): torch's forward and input gradient in the layout the input
      comes in (oneDNN's are as fast there, the kernel's packing costs
      more), the compiled weight gradient (oneDNN's runs at a few percent
      of peak: measured 10-30x slower on stage 4);
    * 3x3 and smaller: as without the compiled kernel.

    Without the compiled kernel: the strips run direct channels_last
    forward and input gradient and an FFT weight gradient; other kernels
    as :func:`_fallback_plan` says.

    CUDA: see :func:`_cuda_plan`.
    """
    if x.device.type == 'cuda':
        return _cuda_plan(x, weight)
    if x.device.type != 'cpu':
        return None
    kh, kw = weight.shape[-2:]
    h, w = x.shape[-2:]
    if kh * kw > 9 and cpu_kernel.usable(x):
        if kh * kw >= 100 and h * w >= 64:
            return Plan('cpp', 'cpp', 'cpp')
        native = 'cl' if memory_format_of(x) == torch.channels_last else \
            'nchw'
        return Plan(native, native, 'cpp')
    return _fallback_plan(x, weight)


def _fallback_plan(x: torch.Tensor, weight: torch.Tensor) -> Optional[Plan]:
    """The CPU plan with torch's kernels only.

    * kernels with >= 100 taps on maps of >= 64 pixels: direct forward and
      input gradient channels_last (NCHW runs wide kernels up to 25x
      slower), weight gradient by FFT (oneDNN's large depthwise weight
      gradient runs at a few percent of peak, 2-10x slower than the FFT);
    * kernels of at most 7 taps per axis (the 5x5 branch): native;
    * other kernels (stage 4's 13x5 and 5x13): native for an NCHW input
      on maps under 28x28 (the backbone runs that stage NCHW, see
      :func:`preferred_memory_format`); for a channels_last input direct
      channels_last, with an NCHW weight gradient on maps under 28x28,
      where oneDNN's channels_last depthwise weight gradient is ~2x slower.
    """
    kh, kw = weight.shape[-2:]
    h, w = x.shape[-2:]
    if kh * kw >= 100 and h * w >= 64:
        return Plan('cl', 'cl', 'fft')
    if max(kh, kw) <= 7:
        return None
    small_map = h * w < 28 * 28
    if small_map and memory_format_of(x) != torch.channels_last:
        return None
    return Plan('cl', 'cl', 'nchw' if small_map else 'cl')


def _cuda_plan(x: torch.Tensor, weight: torch.Tensor) -> Optional[Plan]:
    """The CUDA plan: a fixed rule per shape class, never timed.

    * kernels with >= 100 taps on maps of >= 64 pixels (SLaK's strips):
      all three passes in Triton;
    * everything else (the 5x5 branch, stage 4's small maps): native cuDNN.

    Basis (not yet measured on a GPU here, be honest): RepLKNet and SLaK
    report that cuDNN runs large depthwise kernels far below peak (why the
    reference ships its own implicit-GEMM kernel), while small ones are
    cuDNN's best case. ``tools/analysis/benchmark.py --device cuda`` prints
    per shape and pass the Triton vs cuDNN ratio that confirms (> 1) or
    refutes (< 1) each rule. Under ``torch.use_deterministic_algorithms``
    the weight gradient runs in cuDNN instead (Triton's accumulates with
    atomics, whose order varies), with a warning once.
    """
    if triton_kernels.unavailable_reason(x) is not None:
        return None
    kh, kw = weight.shape[-2:]
    h, w = x.shape[-2:]
    if kh * kw < 100 or h * w < 64:
        return None
    return Plan('triton', 'triton', _deterministic_weight_grad('triton'))


def _deterministic_weight_grad(strategy: str) -> str:
    """``strategy`` for the weight gradient, or ``'nchw'`` (cuDNN/aten)
    instead of Triton's atomics under deterministic algorithms."""
    if strategy != 'triton' or \
            not torch.are_deterministic_algorithms_enabled():
        return strategy
    if 'deterministic' not in _warned:
        _warned.add('deterministic')
        warnings.warn(
            'depthwise_conv2d: torch.use_deterministic_algorithms(True): the '
            "weight gradient runs 'nchw' (aten) instead of Triton, whose "
            'atomic accumulation is not deterministic', UserWarning)
    return 'nchw'


def candidate_strategies(x: torch.Tensor) -> Tuple[str, ...]:
    """The strategies that can run on ``x``'s device here."""
    names = ['nchw', 'cl', 'fft']
    if cpu_kernel.usable(x):
        names.append('cpp')
    if triton_kernels.unavailable_reason(x) is None:
        names.append('triton')
    return tuple(names)


def _timed_pass(name, strategy, xs, ws, gs):
    """A call running pass ``name`` of ``Plan(strategy x 3)`` once."""
    plan = Plan(*([strategy] * 3))
    if name == 'forward':
        return lambda: _apply(xs, ws, None, plan)
    idx = Plan._fields.index(name) - 1
    leaves = [
        xs.detach().requires_grad_(idx == 0),
        ws.detach().requires_grad_(idx == 1)
    ]

    def fn():
        with torch.enable_grad():
            y = _apply(leaves[0], leaves[1], None, plan)
            torch.autograd.grad(y, leaves[idx], gs)

    return fn


def tune_plan(x: torch.Tensor,
              weight: torch.Tensor,
              with_grad: bool = True) -> Plan:
    """Time each strategy for each pass on random data of this shape and
    return the fastest plan (cached per device, dtype and shape, at most
    :data:`TUNED_CACHE_SIZE` shapes, least recently used dropped first).

    Call it ahead of training, outside any forward (``'tune'`` mode then
    uses the result). Random data comes from a private generator, so the
    global RNG streams (dropout, drop-path masks) are untouched; under
    deterministic algorithms Triton's weight gradient is not a candidate.
    """
    key = _shape_key(
        x, weight) + (with_grad, torch.are_deterministic_algorithms_enabled())
    if key in _tuned:
        _tuned.move_to_end(key)
        return _tuned[key]
    gen = torch.Generator(device=x.device).manual_seed(0)
    xs, ws, gs = (
        torch.randn(t.shape, generator=gen, device=t.device, dtype=t.dtype)
        for t in (x, weight, x))
    best = {}
    for name in Plan._fields:
        if name != 'forward' and not with_grad:
            best[name] = 'nchw'  # never run
            continue
        timings = {}
        for strategy in candidate_strategies(x):
            if name == 'weight_grad' and \
                    _deterministic_weight_grad(strategy) != strategy:
                continue
            with torch.no_grad():
                fn = _timed_pass(name, strategy, xs, ws, gs)
                timings[strategy] = time_fn(fn, min_run_time=0.02).median
        best[name] = min(timings, key=timings.get)
    _tuned[key] = plan = Plan(**best)
    while len(_tuned) > TUNED_CACHE_SIZE:
        _tuned.popitem(last=False)
    return plan


def plan_for(x: torch.Tensor, weight: torch.Tensor) -> Optional[Plan]:
    """The plan :func:`depthwise_conv2d` uses for these inputs (after the
    kernel crop); ``None`` for plain ``F.conv2d``. Never times anything."""
    if _state['forced'] is not None:
        return _state['forced']
    if _state['mode'] == 'tune':
        key = _shape_key(
            x, weight) + (torch.is_grad_enabled(),
                          torch.are_deterministic_algorithms_enabled())
        if key in _tuned:
            _tuned.move_to_end(key)
            return _tuned[key]
    return heuristic_plan(x, weight)


def _check_inputs(x, weight, bias) -> None:
    if x.dim() != 4:
        raise ValueError(f'depthwise_conv2d expects x of shape (N, C, H, W),'
                         f' got {tuple(x.shape)}')
    if weight.dim() != 4 or weight.shape[1] != 1 or \
            weight.shape[0] != x.shape[1]:
        raise ValueError(
            'depthwise_conv2d expects a weight of shape (C, 1, kh, kw) with '
            f'C = x.shape[1] = {x.shape[1]}, got {tuple(weight.shape)}')
    kh, kw = weight.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f'depthwise_conv2d needs odd kernel sizes for '
                         f'"same" padding, got {kh}x{kw}')
    if bias is not None and tuple(bias.shape) != (x.shape[1], ):
        raise ValueError(f'bias must have shape ({x.shape[1]},), got '
                         f'{tuple(bias.shape)}')


def _check_dtypes(x, weight, bias) -> None:
    # outside autocast, as F.conv2d: no silent cast by a compiled/FFT pass
    for name, t in (('weight', weight), ('bias', bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(
                f'depthwise_conv2d expects the {name} in the dtype of x '
                f'({x.dtype}), got {t.dtype}')


def depthwise_conv2d(x: torch.Tensor,
                     weight: torch.Tensor,
                     bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depthwise convolution with stride 1 and "same" padding per axis.

    Equals ``F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2),
    groups=C)`` in value and in gradients, for any map size (also smaller
    than the kernel) and under autocast.

    Args:
        x: input of shape (N, C, H, W), NCHW or channels_last memory format.
        weight: (C, 1, kh, kw) with odd kh and kw.
        bias: optional (C,).

    Non-finite values stay local, as in ``F.conv2d``: a NaN/Inf in the
    input reaches only the outputs under the kernel's footprint (an FFT
    plan meeting one runs that pass directly instead, with a warning).

    Returns:
        Tensor of shape (N, C, H, W), in the memory format of ``x``.
    """
    _check_inputs(x, weight, bias)
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        # Do what autocast does for conv2d (run in the autocast dtype, leave
        # float64 alone), but explicitly: a custom Function is not on
        # autocast's list.
        dtype = torch.get_autocast_dtype(dev)
        cast = (lambda t: t
                if t is None or t.dtype == torch.float64 else t.to(dtype))
        with torch.autocast(dev, enabled=False):
            return depthwise_conv2d(cast(x), cast(weight), cast(bias))
    _check_dtypes(x, weight, bias)
    if x.numel() == 0:
        # An empty batch or map: the empty result (no FFT of size 0, no
        # padding larger than the map), still attached to the graph so
        # that backward gives zero gradients of the right shapes.
        y = x * (weight.sum() * 0)
        return y if bias is None else y + bias.view(1, -1, 1, 1)
    if _state['mode'] == 'reference' and _state['forced'] is None:
        kh, kw = weight.shape[-2:]
        return F.conv2d(
            x, weight, bias, padding=(kh // 2, kw // 2), groups=x.shape[1])
    kh, kw = weight.shape[-2:]
    ch, cw = cropped_kernel_size(kh, kw, *x.shape[-2:])
    if (ch, cw) != (kh, kw):
        r0, c0 = (kh - ch) // 2, (kw - cw) // 2
        weight = weight[:, :, r0:r0 + ch, c0:c0 + cw]
    plan = plan_for(x, weight)
    if plan is None:
        # All passes native: let autograd run aten's own backward.
        return F.conv2d(
            x, weight, bias, padding=(ch // 2, cw // 2), groups=x.shape[1])
    return _apply(x, weight, bias, plan)
