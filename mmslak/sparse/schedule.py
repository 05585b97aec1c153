"""When the prune-and-regrow updates happen, for any batch size."""
from typing import Optional

from .validation import check_positive_int


def rescaled_interval(update_interval: int, base_batch_size: Optional[int],
                      total_batch_size: int) -> int:
    """Optimizer steps between updates at ``total_batch_size`` so that they
    come after the same number of samples as ``update_interval`` steps at
    ``base_batch_size`` (the batch the recipe was written for): the paper's
    "every 2000 iterations" holds at total batch 4096 only.

    ``round(update_interval * base / total)``, at least 1; ``base=None``
    keeps ``update_interval`` (steps at whatever batch the run uses).
    """
    check_positive_int('update_interval', update_interval)
    check_positive_int('the total batch size', total_batch_size)
    if base_batch_size is None:
        return update_interval
    check_positive_int('auto_scale_lr.base_batch_size', base_batch_size)
    return max(1, round(update_interval * base_batch_size / total_batch_size))
