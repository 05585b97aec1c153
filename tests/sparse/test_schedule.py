"""mmslak.sparse.schedule: the update interval rescaled to the run's total
batch. Expected values by hand."""
import pytest

from mmslak.sparse.schedule import rescaled_interval


def test_rescaled_interval_values_and_errors():
    # the paper's SLaK-T: 2000 steps at 4096; 8 GPUs x 128 = 1024
    assert rescaled_interval(2000, 4096, 1024) == 8000
    assert rescaled_interval(2000, 4096, 4096) == 2000
    assert rescaled_interval(100, 4096, 8192) == 50
    assert rescaled_interval(3, 4096, 3000) == 4  # round(4.096)
    assert rescaled_interval(1, 8, 64) == 1  # never below one step
    assert rescaled_interval(7, None, 123) == 7
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match='update_interval'):
            rescaled_interval(bad, 8, 8)
    with pytest.raises(ValueError, match='base_batch_size'):
        rescaled_interval(4, 0, 8)
    with pytest.raises(ValueError, match='total batch'):
        rescaled_interval(4, 8, 0)


def test_rescaled_interval_smallest_batches_and_rounding():
    assert rescaled_interval(3, 2, 1) == 6  # a total batch of 1
    assert rescaled_interval(4, 1, 2) == 2  # a base batch of 1
    assert rescaled_interval(5, 3, 4) == 4  # 3.75 rounds up
    assert rescaled_interval(2, 5, 4) == 2  # 2.5 rounds to even
    assert rescaled_interval(1, 3, 2) == 2  # 1.5 rounds to even
    assert rescaled_interval(1, 1, 3) == 1  # 0.33 -> at least one step
    assert rescaled_interval(1, None, 1) == 1
