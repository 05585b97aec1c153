"""The memory format the SLaK backbone runs in."""
import os

import torch

from .depthwise_conv import get_dispatch, memory_format_of  # noqa: F401

# Measured with tools/analysis/benchmark.py: on the CPU the large depthwise
# kernels run several times faster channels_last (and so does the rest of the
# block, whose LayerNorm and MLP act on an (N, H, W, C) view); on CUDA
# channels_last is what cuDNN's fast depthwise kernels expect.
_PREFERRED = {'cpu': True, 'cuda': True}


def preferred_memory_format(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` where the backbone runs faster that way.

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
        use = _PREFERRED.get(x.device.type, False)
    return torch.channels_last if use else torch.contiguous_format
