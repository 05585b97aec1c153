"""The masks of the sparse weights and the operations on them."""
from collections import OrderedDict
from typing import Dict, Optional

import torch
import torch.nn as nn

from .prune_grow import grow_gradient, grow_random, prune_magnitude


class SparseMasks:
    """Binary masks for a set of named weights.

    Each mask is kept as a tensor of the weight's dtype, device and memory
    layout (1 = active), so applying it is one in-place multiply that
    streams the weight once. ``explored`` records, per layer, every
    position that has ever been active (in-time over-parameterisation).

    Args:
        params: name -> weight to be masked.
        masks: name -> bool tensor of the weight's shape (True = active).
            Layers whose mask is all True are kept dense (not stored).
    """

    def __init__(self, params: Dict[str, nn.Parameter],
                 masks: Dict[str, torch.Tensor]) -> None:
        self.params: Dict[str, nn.Parameter] = OrderedDict()
        self._masks: Dict[str, torch.Tensor] = OrderedDict()
        self.explored: Dict[str, torch.Tensor] = OrderedDict()
        # in-scope weights left dense (no mask, or a mask of density 1)
        self.dense: Dict[str, nn.Parameter] = OrderedDict()
        for name, param in params.items():
            if name not in masks:
                self.dense[name] = param
                continue
            mask = masks[name]
            if tuple(mask.shape) != tuple(param.shape):
                raise ValueError(
                    f'mask of {name} has shape {tuple(mask.shape)}, the '
                    f'weight has {tuple(param.shape)}')
            mask = mask.to(device=param.device, dtype=torch.bool)
            if bool(mask.all()):
                self.dense[name] = param  # density 1: stays dense
                continue
            self.params[name] = param
            self.set_mask(name, mask)
            self.explored[name] = mask.clone()
        unknown = set(masks) - set(params)
        if unknown:
            raise KeyError('masks for weights outside the sparse scope: '
                           f'{sorted(unknown)[:5]}')

    def __len__(self) -> int:
        return len(self._masks)

    def __contains__(self, name: str) -> bool:
        return name in self._masks

    def names(self):
        return list(self._masks)

    def set_mask(self, name: str, mask: torch.Tensor) -> None:
        param = self.params[name]
        dense = torch.empty_like(param.data)  # keeps the memory format
        dense.copy_(mask)
        self._masks[name] = dense

    def mask(self, name: str) -> torch.Tensor:
        """Bool mask of ``name`` (True = active)."""
        return self._masks[name] != 0

    def bool_masks(self,
                   device: Optional[str] = None) -> Dict[str, torch.Tensor]:
        return OrderedDict(
            (n, self.mask(n).to(device) if device else self.mask(n))
            for n in self._masks)

    @torch.no_grad()
    def apply(self, names=None) -> None:
        """Zero the inactive weights in place."""
        for name in (self._masks if names is None else names):
            self.params[name].data.mul_(self._masks[name])

    def counts(self) -> Dict[str, int]:
        return OrderedDict(
            (n, int(m.count_nonzero())) for n, m in self._masks.items())

    def stats(self, counts: Optional[Dict[str, int]] = None) -> dict:
        """Densities over the whole sparse scope (dense layers included:
        ``active``, ``total``, ``density``, ``explored_ratio``) and per
        masked layer (``layers``: name -> (active, numel, density)).
        ``counts`` (from :meth:`counts`) saves recounting."""
        counts = self.counts() if counts is None else counts
        numels = {n: self.params[n].numel() for n in counts}
        dense = sum(p.numel() for p in self.dense.values())
        active = sum(counts.values()) + dense
        total = sum(numels.values()) + dense
        explored = dense + sum(
            int(e.count_nonzero()) for e in self.explored.values())
        return dict(
            active=active,
            total=total,
            num_dense_layers=len(self.dense),
            density=active / total if total else 1.,
            explored_ratio=explored / total if total else 1.,
            layers=OrderedDict(
                (n, (counts[n], numels[n], counts[n] / numels[n]))
                for n in counts))

    def prune_regrow(self,
                     name: str,
                     num: int,
                     growth: str = 'random',
                     generator: Optional[torch.Generator] = None,
                     grad: Optional[torch.Tensor] = None):
        """Compute (without applying) one layer's prune-and-regrow.

        Returns ``(new_mask, grown)`` bool tensors: the ``num`` active
        weights of smallest magnitude are removed and ``num`` inactive
        positions (the just-removed ones included) are activated.
        """
        old = self.mask(name)
        new, _ = prune_magnitude(self.params[name], old, num)
        if growth == 'random':
            return grow_random(new, num, generator)
        if growth == 'gradient':
            if grad is None:
                raise ValueError(f'growth="gradient" needs the gradient '
                                 f'of {name}')
            return grow_gradient(new, grad, num)
        raise ValueError(f'unknown growth {growth!r}')

    @torch.no_grad()
    def commit(self, name: str, new_mask: torch.Tensor,
               grown: torch.Tensor) -> None:
        """Install ``new_mask`` and apply it; the ``grown`` weights that were
        inactive start at 0, while a weight pruned and regrown in the same
        update keeps its value (as the reference's ``truncate_weights``,
        which masks the weights once, after growth)."""
        param = self.params[name]
        revived = grown.to(param.device) & (self._masks[name] == 0)
        self._masks[name].copy_(new_mask)
        param.data.masked_fill_(revived, 0)
        self.explored[name] |= new_mask.to(self.explored[name].device)
        self.apply([name])
