"""Prune-and-regrow steps of dynamic sparse training."""
import math
from typing import Tuple

import torch

from .density import smallest_k_mask


def cosine_prune_rate(iteration: int,
                      total_iters: int,
                      start: float,
                      end: float = 0.005) -> float:
    """Cosine decay of the prune fraction from ``start`` (iteration 0) to
    ``end`` (iteration ``total_iters``)."""
    if total_iters <= 0:
        return end
    t = min(max(iteration / total_iters, 0.), 1.)
    return end + 0.5 * (start - end) * (1. + math.cos(math.pi * t))


def num_to_prune(num_active: int, rate: float) -> int:
    """``ceil(rate * active)`` weights, as the reference does."""
    return min(num_active, int(math.ceil(rate * num_active - 1e-9)))


def prune_magnitude(weight: torch.Tensor, mask: torch.Tensor,
                    num: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Deactivate the ``num`` active weights of smallest magnitude.

    Args:
        weight: the layer's weight, any shape.
        mask: bool tensor of the same shape, True = active.
        num: how many active weights to remove (ties: lower index first).

    Returns:
        ``(new_mask, pruned)``, both bool tensors shaped like ``mask``.
    """
    score = weight.detach().abs().float().masked_fill_(~mask, math.inf)
    try:
        pruned = smallest_k_mask(score, num)
    except ValueError:
        raise ValueError(f'cannot prune {num} weights: only '
                         f'{int(mask.count_nonzero())} are active') from None
    return mask & ~pruned, pruned


def _select_inactive(score: torch.Tensor, mask: torch.Tensor,
                     num: int) -> torch.Tensor:
    """The ``num`` inactive positions of smallest ``score``."""
    try:
        return smallest_k_mask(score.masked_fill_(mask, math.inf), num)
    except ValueError:
        inactive = mask.numel() - int(mask.count_nonzero())
        raise ValueError(f'cannot regrow {num} weights: only {inactive} '
                         'are inactive') from None


def grow_random(mask: torch.Tensor, num: int, generator: torch.Generator
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Activate ``num`` inactive positions uniformly at random.

    The positions with the ``num`` smallest of i.i.d. uniform keys, drawn
    from the CPU ``generator`` (same result on any device).
    Returns ``(new_mask, grown)``.
    """
    keys = torch.rand(mask.shape, generator=generator).to(mask.device)
    grown = _select_inactive(keys, mask, num)
    return mask | grown, grown


def grow_gradient(mask: torch.Tensor, grad: torch.Tensor,
                  num: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Activate the ``num`` inactive positions of largest ``|grad|``
    (RigL). Returns ``(new_mask, grown)``."""
    score = grad.detach().abs().float().neg_()
    grown = _select_inactive(score, mask, num)
    return mask | grown, grown
