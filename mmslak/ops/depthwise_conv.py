"""Depthwise "same" convolution with odd, possibly rectangular kernels.

This is the single entry point the SLaK large-kernel layer calls, so that the
strategy used to compute it (direct, FFT, kernel crop, ...) is chosen in one
place.
"""
from typing import Optional

import torch
import torch.nn.functional as F


def depthwise_conv2d(x: torch.Tensor,
                     weight: torch.Tensor,
                     bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depthwise convolution with stride 1 and "same" padding per axis.

    Args:
        x: input of shape (N, C, H, W), NCHW or channels_last memory format.
        weight: (C, 1, kh, kw) with odd kh and kw.
        bias: optional (C,).

    Returns:
        Tensor of shape (N, C, H, W).
    """
    kh, kw = weight.shape[-2:]
    return F.conv2d(
        x, weight, bias, padding=(kh // 2, kw // 2), groups=weight.shape[0])
