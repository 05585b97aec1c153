"""The one timing helper of mmslak (the dispatch's per-shape tuning, the
throughput analysis and the benchmark all time through it).

It is ``torch.utils.benchmark.Timer`` on the caller's torch thread count
(the Timer's own default is one thread); the Timer warms up and synchronises
the accelerator (CUDA) around each timed block.
"""
from typing import Callable, Optional

import torch
from torch.utils.benchmark import Timer


def time_fn(fn: Callable[[], object],
            number: Optional[int] = None,
            min_run_time: float = 0.) -> 'torch.utils.benchmark.Measurement':
    """Time ``fn()``; read ``.median`` / ``.mean`` (seconds per call).

    Args:
        fn: the call to time (no arguments).
        number: time this many back-to-back calls (``Timer.timeit``, after
            its own warm-up of at least 2 calls); ``None``: let
            ``Timer.blocked_autorange`` choose the block size (its block
            size estimate is the warm-up: a call over ~10 ms runs twice).
        min_run_time: ``blocked_autorange``'s minimum timed seconds.
    """
    if number is not None and number < 1:
        raise ValueError(f'number must be >= 1 (or None), got {number}')
    timer = Timer(
        stmt='fn()', globals=dict(fn=fn), num_threads=torch.get_num_threads())
    if number is None:
        return timer.blocked_autorange(min_run_time=min_run_time)
    return timer.timeit(number)
