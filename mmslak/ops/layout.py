"""The memory format the SLaK backbone runs in."""
import os
from typing import Optional

import torch

from .depthwise_conv import get_dispatch, memory_format_of  # noqa: F401

# Measured with tools/analysis/benchmark.py: on the CPU the large depthwise
# kernels run several times faster channels_last (and so does the rest of the
# block, whose LayerNorm and MLP act on an (N, H, W, C) view); on CUDA
# channels_last is what cuDNN's fast depthwise kernels expect.
_CHANNELS_LAST_DEVICES = ('cpu', 'cuda')


def preferred_memory_format(x: torch.Tensor,
                            kernel_size: Optional[int] = None
                            ) -> torch.memory_format:
    """``torch.channels_last`` where the backbone runs faster that way.

    Args:
        x: the feature map a stage will run on.
        kernel_size: that stage's large kernel size, if known. On the CPU a
            stage whose kernels are at most 13 on a map under 28x28 (SLaK's
            last stage) runs NCHW: oneDNN's channels_last depthwise weight
            gradient is ~2x slower there, and such kernels are as fast NCHW.

    ``MMSLAK_CHANNELS_LAST=0`` / ``1`` overrides the choice; the
    ``'reference'`` dispatch mode runs NCHW like the reference code.
    """
    env = os.environ.get('MMSLAK_CHANNELS_LAST')
    if env is not None and env not in ('0', '1'):
        raise ValueError(f'MMSLAK_CHANNELS_LAST must be 0 or 1, got {env!r}')
    if env is not None:
        use = env == '1'
    elif get_dispatch() == 'reference':
        use = False
    else:
        use = x.device.type in _CHANNELS_LAST_DEVICES
        if use and x.device.type == 'cpu' and kernel_size is not None and \
                kernel_size <= 13 and x.shape[-2] * x.shape[-1] < 28 * 28:
            use = False
    return torch.channels_last if use else torch.contiguous_format
