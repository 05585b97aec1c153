"""Prune-and-regrow steps of dynamic sparse training."""
import math
from typing import Optional, Tuple

import torch

from .density import topk_indices


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
    flat = mask.flatten()
    active = flat.nonzero().squeeze(1)
    if num > active.numel():
        raise ValueError(
            f'cannot prune {num} of {active.numel()} active weights')
    mags = weight.detach().flatten()[active].abs()
    drop = active[topk_indices(mags, num, largest=False)]
    pruned = torch.zeros_like(flat)
    pruned[drop] = True
    return (flat & ~pruned).view_as(mask), pruned.view_as(mask)


def grow_random(mask: torch.Tensor, num: int, generator: torch.Generator
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Activate ``num`` inactive positions uniformly at random.

    The draw uses the CPU ``generator`` (same result on any device).
    Returns ``(new_mask, grown)``.
    """
    flat = mask.flatten()
    inactive = (~flat).nonzero().squeeze(1)
    if num > inactive.numel():
        raise ValueError(
            f'cannot regrow {num} of {inactive.numel()} inactive weights')
    pick = torch.randperm(inactive.numel(), generator=generator)[:num]
    grown = torch.zeros_like(flat)
    grown[inactive[pick.to(inactive.device)]] = True
    return (flat | grown).view_as(mask), grown.view_as(mask)


def grow_gradient(mask: torch.Tensor, grad: torch.Tensor,
                  num: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Activate the ``num`` inactive positions of largest ``|grad|``
    (RigL). Returns ``(new_mask, grown)``."""
    flat = mask.flatten()
    inactive = (~flat).nonzero().squeeze(1)
    if num > inactive.numel():
        raise ValueError(
            f'cannot regrow {num} of {inactive.numel()} inactive weights')
    mags = grad.detach().flatten()[inactive].abs()
    grown = torch.zeros_like(flat)
    grown[inactive[topk_indices(mags, num, largest=True)]] = True
    return (flat | grown).view_as(mask), grown.view_as(mask)


@torch.no_grad()
def reset_optimizer_state(optimizer: Optional[torch.optim.Optimizer],
                          param: torch.Tensor, where: torch.Tensor) -> int:
    """Zero every per-element state tensor of ``param`` (AdamW
    ``exp_avg`` / ``exp_avg_sq``, SGD ``momentum_buffer``, ...) at the
    bool positions ``where``. Returns how many state tensors were reset."""
    if optimizer is None:
        return 0
    state = optimizer.state.get(param, {})
    n = 0
    for value in state.values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(where, 0)
            n += 1
    return n
