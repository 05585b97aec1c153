"""FFT formulation of a depthwise, stride-1, "same"-padded convolution.

Notation (one channel, one axis; the 2-D case is separable): a kernel ``w``
of odd length ``k = 2p + 1`` and an input ``x`` of length ``n``, zero outside
``[0, n)``. PyTorch's convolution is a cross-correlation::

    y[h] = sum_{d=-p..p} w[d + p] * x[h + d]

Put the kernel on a circle of length ``L``, ``kk[d mod L] = w[d + p]``. Then
``y`` is the circular cross-correlation of ``x`` with ``kk`` and equals the
linear one as long as ``L >= n + p`` (the wrapped taps only ever meet the zero
padding). So ``Y = X * conj(KK)``, the input gradient is the circular
convolution ``G * KK`` and the weight gradient is the circular
cross-correlation of ``x`` with ``g``, read at lags ``-p..p``: all three are
one pointwise product of spectra. ``L = n + p`` rather than the usual
``n + 2p`` (linear convolution) is what makes this cheaper than a textbook
FFT convolution.
"""
from typing import Tuple

import torch


def _is_smooth(n: int) -> bool:
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def fft_size(n: int) -> int:
    """Smallest 5-smooth integer >= ``n`` (fast for pocketfft and cuFFT)."""
    n = max(n, 1)
    while not _is_smooth(n):
        n += 1
    return n


def fft_shape(h: int, w: int, kh: int, kw: int) -> Tuple[int, int]:
    """Circle lengths that make the circular correlation exact."""
    return fft_size(h + kh // 2), fft_size(w + kw // 2)


def kernel_spectrum(weight: torch.Tensor, size: Tuple[int,
                                                      int]) -> torch.Tensor:
    """rfft2 of the kernels wrapped onto the circle: (C, 1, kh, kw) ->
    complex (C, Lh, Lw // 2 + 1)."""
    kh, kw = weight.shape[-2:]
    wrapped = weight.new_zeros((weight.shape[0], ) + tuple(size))
    wrapped[:, :kh, :kw] = weight[:, 0]
    wrapped = torch.roll(
        wrapped, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.rfft2(wrapped)


def fft_forward(x: torch.Tensor, w_spec: torch.Tensor,
                size: Tuple[int, int]) -> torch.Tensor:
    """y = depthwise correlation of x (N, C, H, W) with the kernels whose
    wrapped spectrum is ``w_spec``."""
    h, w = x.shape[-2:]
    spec = torch.fft.rfft2(x, s=size)
    spec.mul_(w_spec.conj_physical())  # (a lazy conj view is lost under
    # a dispatch mode, e.g. FlopCounterMode, once inside a custom op)
    return torch.fft.irfft2(spec, s=size)[..., :h, :w]


def fft_input_grad(grad: torch.Tensor, w_spec: torch.Tensor,
                   size: Tuple[int, int]) -> torch.Tensor:
    """dL/dx from dL/dy (N, C, H, W): circular convolution with the
    wrapped kernel."""
    h, w = grad.shape[-2:]
    spec = torch.fft.rfft2(grad, s=size)
    spec.mul_(w_spec)
    return torch.fft.irfft2(spec, s=size)[..., :h, :w]


def fft_weight_grad(x: torch.Tensor, grad: torch.Tensor, kh: int, kw: int,
                    size: Tuple[int, int]) -> torch.Tensor:
    """dL/dw (C, 1, kh, kw) from x and dL/dy, both (N, C, H, W).

    The batch sum is taken on the spectra, so only one inverse transform per
    channel is needed.
    """
    x_spec = torch.fft.rfft2(x, s=size)
    g_spec = torch.fft.rfft2(grad, s=size)
    # sum_n conj(G) X, as a batched dot product over the batch axis.
    prod = torch.einsum('nchw,nchw->chw', g_spec.conj_physical(), x_spec)
    corr = torch.fft.irfft2(prod, s=size)  # (C, Lh, Lw), lag d at d mod L
    ph, pw = kh // 2, kw // 2
    lh, lw = size
    rows = torch.cat([corr[:, lh - ph:], corr[:, :ph + 1]], dim=1)
    out = torch.cat([rows[:, :, lw - pw:], rows[:, :, :pw + 1]], dim=2)
    return out.unsqueeze(1)
