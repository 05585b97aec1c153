"""mmslak.sparse.prune_grow: the prune/regrow steps and the prune-rate
schedule, with hand-computed expectations (the reference's counts)."""
import math

import pytest
import torch
from torch.testing import assert_close

from mmslak.sparse.prune_grow import (cosine_prune_rate, grow_gradient,
                                      grow_random, num_to_prune,
                                      prune_magnitude)


@pytest.mark.parametrize(
    'iteration, total, expected',
    [
        (0, 1, 0.3),  # one-iteration schedule still starts at ``start``
        (1, 1, 0.01),
        (7, 0, 0.01),  # empty schedule: ``end`` (no division by zero)
        (-5, 10, 0.3),  # before the start: clamped to ``start``
        (15, 10, 0.01),  # past the end: clamped to ``end``, not cos(1.5 pi)
        (30, 10, 0.01),
    ])
def test_cosine_prune_rate_edges(iteration, total, expected):
    assert cosine_prune_rate(iteration, total, 0.3, 0.01) == pytest.approx(
        expected, abs=1e-12)


@pytest.mark.parametrize(
    'active, rate, expected',
    [
        (10, 0.25, 3),  # ceil(2.5), the reference's math.ceil
        (10, 0.3, 3),  # 0.3 * 10 = 3.0000000000000004 in floats: still 3
        (7, 0.5, 4),
        (4, 1.5, 4),  # never more than the active weights
        (0, 0.5, 0),
        (1000, 0.0, 0),
    ])
def test_num_to_prune_matches_the_reference_ceil(active, rate, expected):
    assert num_to_prune(active, rate) == expected
    if rate <= 1:  # the reference's formula, computed independently
        assert expected == min(active, math.ceil(round(rate * active, 9)))


def test_regrow_error_names_the_inactive_count():
    mask = torch.tensor([True, True, False, True, False])
    with pytest.raises(ValueError) as info:
        grow_random(mask, 3, torch.Generator().manual_seed(0))
    assert str(info.value) == 'cannot regrow 3 weights: only 2 are inactive'
    with pytest.raises(ValueError) as info:
        grow_gradient(mask, torch.ones(5), 3)
    assert str(info.value) == 'cannot regrow 3 weights: only 2 are inactive'


def test_grow_gradient_keeps_every_active_weight():
    mask = torch.tensor([True, False, False, True, False, False])
    grad = torch.tensor([9., 0.5, -3., 9., 2., -0.1])
    new, grown = grow_gradient(mask, grad, 2)
    # hand: the inactive |grad| are 0.5, 3, 2, 0.1 -> indices 2 and 4
    assert grown.tolist() == [False, False, True, False, True, False]
    assert new.tolist() == [True, False, True, True, True, False]


def test_prune_magnitude_removes_smallest_active():
    w = torch.randn(40, 30)
    mask = torch.rand(40, 30) < 0.7
    n = 100
    new, pruned = prune_magnitude(w, mask, n)
    assert int(pruned.sum()) == n
    assert not (pruned & ~mask).any()  # only active ones are pruned
    assert torch.equal(new, mask & ~pruned)
    kept = w[new].abs()
    assert w[pruned].abs().max() <= kept.min()
    # independent: sort the active magnitudes
    active_mags = torch.sort(w[mask].abs()).values
    assert_close(torch.sort(w[pruned].abs()).values, active_mags[:n])
    with pytest.raises(ValueError, match='cannot prune'):
        prune_magnitude(w, mask, int(mask.sum()) + 1)


def test_grow_random_and_gradient():
    mask = torch.rand(20, 10) < 0.5
    g = torch.Generator().manual_seed(0)
    new, grown = grow_random(mask, 30, g)
    assert int(grown.sum()) == 30 and not (grown & mask).any()
    assert torch.equal(new, mask | grown)
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(grow_random(mask, 30, g2)[1], grown)
    grad = torch.randn(20, 10)
    new, grown = grow_gradient(mask, grad, 25)
    assert int(grown.sum()) == 25 and not (grown & mask).any()
    inactive_mags = torch.sort(grad[~mask].abs(), descending=True).values
    assert_close(
        torch.sort(grad[grown].abs(), descending=True).values,
        inactive_mags[:25])
    with pytest.raises(ValueError, match='cannot regrow'):
        grow_random(mask, int((~mask).sum()) + 1, g)


def test_cosine_prune_rate():
    assert cosine_prune_rate(0, 1000, 0.5) == pytest.approx(0.5)
    assert cosine_prune_rate(500, 1000, 0.5) == pytest.approx(
        (0.5 + 0.005) / 2)
    assert cosine_prune_rate(1000, 1000, 0.5) == pytest.approx(0.005)
    assert cosine_prune_rate(250, 1000, 0.3,
                             0.) == pytest.approx(0.15 *
                                                  (1 + math.cos(math.pi / 4)))
