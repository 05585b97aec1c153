"""The ``'triton'`` strategy: Triton kernels of the three passes (CUDA;
fp16, bf16, fp32, fp64 storage with fp32 math, any memory format,
channels_last coalesced).

On the CPU the kernels run only under Triton's interpreter
(``TRITON_INTERPRET=1`` set before this strategy's first use), which is how
CI tests their numerics without a GPU.
"""
import contextlib
import importlib.util
import os
from typing import Optional

import torch

_BW, _BC = 16, 32  # forward: output columns x channels per program
_WG_BW, _WG_BJ = 16, 8  # columns x kernel taps per program (both kernels)
_INTERP_MAX = 64  # interpreter: fewer, larger programs (numpy per op)
_state = dict(module=None)


def interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def unavailable_reason(x: torch.Tensor) -> Optional[str]:
    """Why the Triton kernels cannot run on ``x`` (None if they can)."""
    if importlib.util.find_spec('triton') is None:
        return 'triton is not installed'
    if x.device.type == 'cuda' or (x.device.type == 'cpu' and interpreting()):
        return None
    return (f'Triton kernels run on CUDA (or on the CPU under '
            f'TRITON_INTERPRET=1), got a {x.device.type} tensor')


def _block(default: int, size: int) -> int:
    if not interpreting():
        return default
    return min(_INTERP_MAX, triton_next_pow2(size))


def _kernels():
    if _state['module'] is None:
        from . import _triton_dwconv
        _state['module'] = _triton_dwconv
    return _state['module']


def _launch(kernel, grid, first: torch.Tensor, *args, **meta) -> None:
    """Launch ``kernel`` on the device of its tensors: Triton launches on
    the *current* CUDA device, which need not be theirs (``cuda:1``)."""
    guard = torch.cuda.device(first.device) if first.device.type == 'cuda' \
        else contextlib.nullcontext()
    with guard:
        kernel[grid](first, *args, **meta)


def _strides(t: torch.Tensor):
    return t.stride(0), t.stride(1), t.stride(2), t.stride(3)


def forward(x: torch.Tensor,
            weight: torch.Tensor,
            bias: Optional[torch.Tensor] = None,
            flip: bool = False) -> torch.Tensor:
    """Depthwise same-padded correlation (``flip``: with the flipped kernel,
    the input gradient), in the memory format and dtype of ``x``."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    y = torch.empty_like(x)
    if y.numel() == 0:
        return y
    wt = weight.reshape(c, kh * kw).contiguous()
    b = bias.contiguous() if bias is not None else wt
    bw, bj, bc = _block(_BW, w), _block(_WG_BJ, kw), _block(_BC, c)
    grid = (n * h, triton_cdiv(w, bw), triton_cdiv(c, bc))
    _launch(
        _kernels().dwconv_fwd_kernel,
        grid,
        x,
        wt,
        b,
        y,
        c,
        h,
        w,
        kh,
        kw,
        *_strides(x),
        *_strides(y),
        HAS_BIAS=bias is not None,
        FLIP=flip,
        BW=bw,
        BJ=bj,
        BC=bc)
    return y


def weight_grad(grad: torch.Tensor, x: torch.Tensor, kh: int,
                kw: int) -> torch.Tensor:
    """dL/dw (C, 1, kh, kw) in fp32."""
    n, c, h, w = x.shape
    dw = torch.zeros((c, kh, kw), dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        return dw.unsqueeze(1)
    bw, bj, bc = _block(_WG_BW, w), _block(_WG_BJ, kw), _block(_BC, c)
    nj = triton_cdiv(kw, bj)
    grid = (kh * nj, triton_cdiv(c, bc), n)
    _launch(
        _kernels().dwconv_wgrad_kernel,
        grid,
        x,
        grad,
        dw,
        c,
        h,
        w,
        kh,
        kw,
        *_strides(x),
        *_strides(grad),
        nj,
        BW=bw,
        BJ=bj,
        BC=bc)
    return dw.unsqueeze(1)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def triton_next_pow2(a: int) -> int:
    return 1 << max(0, a - 1).bit_length()
