"""Inference throughput (images/s) of a model's tensor forward."""
from typing import Callable, Dict, List

import torch

from ..ops.timing import time_fn


@torch.no_grad()
def measure_throughput(forward: Callable[[torch.Tensor], object],
                       inputs: torch.Tensor,
                       warmup: int = 3,
                       iters: int = 10,
                       repeats: int = 1) -> Dict[str, float]:
    """Time ``forward(inputs)`` and return images/s.

    Args:
        forward: the callable to time (e.g. a model in eval mode).
        inputs: the (N, 3, H, W) batch, already on the target device.
        warmup: untimed calls first (allocator, cuDNN autotuning).
        iters: timed calls per repeat (one block of
            :func:`mmslak.ops.timing.time_fn`).
        repeats: independent timings; the median is reported.

    Returns:
        dict: ``images_per_s`` (median), ``ms_per_batch`` and
        ``all_images_per_s`` (one value per repeat).
    """
    if warmup < 0 or iters < 1 or repeats < 1:
        raise ValueError('need warmup >= 0, iters >= 1 and repeats >= 1, '
                         f'got {warmup}, {iters}, {repeats}')
    for _ in range(warmup):
        forward(inputs)
    rates: List[float] = [
        inputs.shape[0] / time_fn(lambda: forward(inputs), number=iters).mean
        for _ in range(repeats)
    ]
    median = sorted(rates)[len(rates) // 2]
    return dict(
        images_per_s=median,
        ms_per_batch=1000. * inputs.shape[0] / median,
        all_images_per_s=rates)
