"""Checks of ``SparseTrainingHook``'s arguments and of the masks it is
about to train with; each error names the parameter at fault."""
import logging
import numbers
import re
from typing import Dict, Sequence

import torch
from mmengine.logging import print_log

__all__ = [
    'check_density', 'check_exclude', 'check_masks_keep_weights',
    'check_masks_matched'
]


def check_density(density) -> float:
    """``density`` as a float in (0, 1]."""
    if not isinstance(density, numbers.Real) or isinstance(density, bool):
        raise TypeError('SparseTrainingHook: density must be a number in '
                        f'(0, 1], got {density!r} ({type(density).__name__})')
    if not 0. < density <= 1.:
        raise ValueError('SparseTrainingHook: density must be in (0, 1], '
                         f'got {density}')
    return float(density)


def check_exclude(exclude) -> list:
    """``exclude`` as a list of valid regular expressions."""
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError('SparseTrainingHook: exclude must be regular '
                            f'expressions (str), got {pattern!r}')
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(
                f'SparseTrainingHook: exclude pattern {pattern!r} is not a '
                f'valid regular expression: {e}') from None
    return patterns


def check_masks_keep_weights(masks: Dict[str, torch.Tensor], density: float,
                             init: str) -> None:
    """Refuse a density too small to give every masked layer one weight,
    or (with the density-proportional inits 'uniform' / 'erk') one that
    leaves a layer with no active weight: such a layer outputs a constant.
    SNIP may legitimately empty a layer whose scores are all small (a
    parallel branch, say): that is logged as a warning."""
    empty = [n for n, m in masks.items() if not bool(m.any())]
    if not empty:
        return
    active = sum(int(m.count_nonzero()) for m in masks.values())
    if active >= len(masks) and init == 'snip':
        print_log(
            f'SparseTrainingHook: SNIP left {len(empty)} layers with no '
            f'active weight: {empty[:5]}',
            logger='current',
            level=logging.WARNING)
        return
    smallest = min(m.numel() for m in masks.values())
    raise ValueError(
        f'SparseTrainingHook: density={density} leaves {len(empty)} of '
        f'{len(masks)} layers with no active weight (e.g. {empty[:3]}; '
        f'{active} active weights in all); raise density (the smallest '
        f'layer has {smallest} weights), or keep small layers dense with '
        'exclude=[...]')


def check_masks_matched(used: Sequence[str], names: Sequence[str],
                        params: Sequence[str], source: str) -> None:
    """Refuse a mask source none of whose masks names a model weight in
    the sparse scope (it would train dense)."""
    if used:
        return
    if not names:
        raise ValueError(
            f"SparseTrainingHook (init='checkpoint'): {source} holds no "
            'mask and no 2-D/4-D weight to take a mask from (it would train '
            'dense)')
    raise ValueError(
        f"SparseTrainingHook (init='checkpoint'): none of the {len(names)} "
        f'masks from {source} matches a weight of the model in the sparse '
        'scope '
        f'(checkpoint: {list(names)[:3]}, model: {list(params)[:3]}); '
        'set mask_prefix_map (e.g. {"": "backbone."}) or check scope / '
        'exclude')
