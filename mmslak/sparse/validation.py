"""Checks of the sparse-training arguments (``DynamicSparsity`` and
``SparseTrainingHook``) and of the masks about to be trained with; each
error names the parameter at fault. The one place these are checked."""
import logging
import numbers
import re
from typing import Any, Dict, Sequence

import torch
from mmengine.logging import print_log

from .scope import check_scope

__all__ = [
    'INITS', 'GROWTHS', 'check_density', 'check_exclude', 'check_positive_int',
    'check_sparsity_args', 'check_masks_keep_weights', 'check_masks_matched'
]

INITS = ('snip', 'erk', 'uniform', 'checkpoint')
GROWTHS = ('random', 'gradient')


def check_density(density) -> float:
    """``density`` as a float in (0, 1]."""
    if not isinstance(density, numbers.Real) or isinstance(density, bool):
        raise TypeError('density must be a number in (0, 1], got '
                        f'{density!r} ({type(density).__name__})')
    if not 0. < density <= 1.:
        raise ValueError(f'density must be in (0, 1], got {density}')
    return float(density)


def check_positive_int(name: str, value) -> int:
    """``value`` as a positive int; the error names ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return value


def check_sparsity_args(args: Dict[str, Any]) -> dict:
    """Check the arguments of ``DynamicSparsity`` (``args``: name -> value,
    all of them; the model is not read); returns them with ``density`` as a
    float and ``exclude`` as a list. Use ``DynamicSparsity.check_options``.
    """
    if args['init'] not in INITS:
        raise ValueError(f'init must be one of {INITS}, got {args["init"]!r}')
    check_scope(args['scope'])
    if args['growth'] not in GROWTHS:
        raise ValueError(
            f'growth must be one of {GROWTHS}, got {args["growth"]!r}')
    if args['dynamic']:
        check_positive_int('update_interval', args['update_interval'])
    final, start = args['final_prune_rate'], args['prune_rate']
    if not 0. <= final <= start <= 1.:
        raise ValueError('need 0 <= final_prune_rate <= prune_rate <= 1, got '
                         f'{final}, {start}')
    threshold = args['dense_threshold']
    if threshold is not None and not 0. < threshold <= 1.:
        raise ValueError('dense_threshold must be in (0, 1] or None, got '
                         f'{threshold!r}')
    return dict(
        args,
        density=check_density(args['density']),
        exclude=check_exclude(args['exclude']))


def check_exclude(exclude) -> list:
    """``exclude`` as a list of valid regular expressions."""
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError('exclude must be regular expressions (str), '
                            f'got {pattern!r}')
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(
                f'exclude pattern {pattern!r} is not a valid regular '
                f'expression: {e}') from None
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
            f'SNIP left {len(empty)} layers with no '
            f'active weight: {empty[:5]}',
            logger='current',
            level=logging.WARNING)
        return
    smallest = min(m.numel() for m in masks.values())
    raise ValueError(
        f'density={density} leaves {len(empty)} of '
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
            f"init='checkpoint': {source} holds no "
            'mask and no 2-D/4-D weight to take a mask from (it would train '
            'dense)')
    raise ValueError(
        f"init='checkpoint': none of the {len(names)} "
        f'masks from {source} matches a weight of the model in the sparse '
        'scope '
        f'(checkpoint: {list(names)[:3]}, model: {list(params)[:3]}); '
        'set mask_prefix_map (e.g. {"": "backbone."}) or check scope / '
        'exclude')
