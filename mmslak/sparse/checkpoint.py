"""Reading masks out of checkpoints, and their compact (bit-packed) form
in ``checkpoint['sparsity']``."""
from collections import OrderedDict
from typing import Dict, Sequence, Union

import torch

from ..checkpoint.loading import (CheckpointError, get_state_dict,
                                  read_checkpoint)
from .scope import is_sparse_weight

_BUFFER_SUFFIXES = ('running_mean', 'running_var', 'num_batches_tracked')
PACKBITS = 'packbits'
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8 bytes, 8 elements per byte, most significant
    bit first (numpy's ``packbits`` order), in C order; CPU."""
    flat = mask.detach().reshape(-1).to('cpu', torch.uint8)
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    return (flat.view(-1, 8) * _BIT_WEIGHTS).sum(1, dtype=torch.uint8)


def unpack_mask(bits: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`pack_mask`: a bool tensor of ``shape``."""
    numel = 1
    for size in shape:
        numel *= int(size)
    if bits.dtype != torch.uint8 or bits.numel() != -(-numel // 8):
        raise ValueError(f'packed mask of {bits.numel()} {bits.dtype} bytes '
                         f'cannot hold shape {tuple(shape)}')
    flat = (bits.reshape(-1, 1) & _BIT_WEIGHTS.to(bits.device)) != 0
    return flat.reshape(-1)[:numel].reshape(tuple(shape))


def encode_sparsity_state(state: dict) -> dict:
    """``SparseTrainingHook`` state with ``masks`` and ``explored`` (bool
    tensors) bit-packed: 2 bits per masked weight instead of 2 bytes."""
    out = dict(state, version=2, mask_format=PACKBITS)
    out['shapes'] = OrderedDict(
        (n, list(m.shape)) for n, m in state['masks'].items())
    for key in ('masks', 'explored'):
        out[key] = OrderedDict(
            (n, pack_mask(m)) for n, m in state.get(key, {}).items())
    return out


def decode_sparsity_state(state: dict, source: str = 'checkpoint') -> dict:
    """Bool ``masks`` / ``explored`` of a saved sparsity state, bit-packed
    (:func:`encode_sparsity_state`) or saved as bool tensors (version 1).
    A mask whose bytes cannot hold its shape raises ``CheckpointError``
    naming the layer and ``source`` (the file). Defaults to 'checkpoint'."""
    out = dict(state)
    packed = state.get('mask_format') == PACKBITS
    for key in ('masks', 'explored'):
        out[key] = OrderedDict()
        for n, v in state.get(key, {}).items():
            try:
                out[key][n] = (
                    unpack_mask(v, state['shapes'][n]) if packed else v.bool())
            except (ValueError, KeyError) as e:
                raise CheckpointError(
                    f'{source}: {key} of layer {n} cannot be read: {e}')
    out.pop('mask_format', None)
    out.pop('shapes', None)
    return out


def masks_from_checkpoint(ckpt: Union[dict, str],
                          zeros: bool = True,
                          source: str = 'checkpoint'
                          ) -> Dict[str, torch.Tensor]:
    """Masks of a checkpoint: ``ckpt['sparsity']['masks']`` when saved by
    ``SparseTrainingHook``, else ``weight != 0`` for every sparse-scope
    weight (:func:`~mmslak.sparse.scope.is_sparse_weight`; for checkpoints
    saved without masks, such as the reference implementation's). A saved
    mask whose shape differs from its weight's raises ``CheckpointError``
    naming the layer and the file.

    Args:
        ckpt (dict | str): a loaded checkpoint or its path.
        zeros (bool): without saved masks, take the weights' zeros; False
            raises a KeyError naming the checkpoint instead. Defaults to
            True.
        source (str): how errors name a loaded ``ckpt`` (a path names
            itself). Defaults to 'checkpoint'.
    """
    if isinstance(ckpt, str):
        source, ckpt = ckpt, read_checkpoint(ckpt)
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(ckpt)}')
    sparsity = ckpt.get('sparsity')
    if isinstance(sparsity, dict) and 'masks' in sparsity:
        masks = decode_sparsity_state(sparsity, source)['masks']
        state = get_state_dict(ckpt, strip_prefixes=())
        for name, mask in masks.items():
            weight = state.get(name)
            if torch.is_tensor(weight) and weight.shape != mask.shape:
                raise CheckpointError(
                    f'{source}: the mask of layer {name} has shape '
                    f'{tuple(mask.shape)} but its weight has shape '
                    f'{tuple(weight.shape)}')
        return masks
    if not zeros:
        raise KeyError(f'{source} holds no sparse-training masks '
                       "(checkpoint['sparsity']['masks'])")
    masks = OrderedDict()
    for name, value in get_state_dict(ckpt, strip_prefixes=()).items():
        if (torch.is_tensor(value) and is_sparse_weight(name, value)
                and not name.endswith(_BUFFER_SUFFIXES)):
            masks[name] = value != 0
    return masks
