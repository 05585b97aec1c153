"""When the prune-and-regrow updates happen, for any batch size."""
from typing import Optional


def rescaled_interval(update_interval: int, base_batch_size: Optional[int],
                      total_batch_size: int) -> int:
    """Optimizer steps between updates at ``total_batch_size`` so that they
    come after the same number of samples as ``update_interval`` steps at
    ``base_batch_size`` (the batch the recipe was written for): the paper's
    "every 2000 iterations" holds at total batch 4096 only.

    ``round(update_interval * base / total)``, at least 1; ``base=None``
    keeps ``update_interval`` (steps at whatever batch the run uses).
    """
    if not isinstance(update_interval, int) or update_interval < 1:
        raise ValueError('update_interval must be a positive int, got '
                         f'{update_interval!r}')
    if not isinstance(total_batch_size, int) or total_batch_size < 1:
        raise ValueError('the total batch size must be a positive int, got '
                         f'{total_batch_size!r}')
    if base_batch_size is None:
        return update_interval
    if not isinstance(base_batch_size, int) or base_batch_size < 1:
        raise ValueError('auto_scale_lr.base_batch_size must be a positive '
                         f'int, got {base_batch_size!r}')
    return max(1, round(update_interval * base_batch_size / total_batch_size))
