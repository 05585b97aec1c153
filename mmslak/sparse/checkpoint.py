"""Reading masks out of checkpoints."""
from collections import OrderedDict
from typing import Dict, Union

import torch

_BUFFER_SUFFIXES = ('running_mean', 'running_var', 'num_batches_tracked')


def checkpoint_state_dict(ckpt: dict) -> dict:
    """The weights of an mmengine (``state_dict``) or reference
    (``model``) checkpoint, or of a bare state dict."""
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    return ckpt


def masks_from_checkpoint(ckpt: Union[dict, str]) -> Dict[str, torch.Tensor]:
    """Masks of a checkpoint: ``ckpt['sparsity']['masks']`` when saved by
    ``SparseTrainingHook``, else ``weight != 0`` for every 2-D / 4-D
    floating-point weight (for checkpoints saved without masks, such as
    the reference implementation's). ``ckpt`` is a loaded dict or a path.
    """
    if isinstance(ckpt, str):
        from mmslak.checkpoint import read_checkpoint
        ckpt = read_checkpoint(ckpt)
    if not isinstance(ckpt, dict):
        raise TypeError(f'expected a checkpoint dict, got {type(ckpt)}')
    sparsity = ckpt.get('sparsity')
    if isinstance(sparsity, dict) and 'masks' in sparsity:
        return OrderedDict((k, v.bool()) for k, v in sparsity['masks'].items())
    masks = OrderedDict()
    for name, value in checkpoint_state_dict(ckpt).items():
        if (torch.is_tensor(value) and value.is_floating_point()
                and value.dim() in (2, 4)
                and not name.endswith(_BUFFER_SUFFIXES)):
            masks[name] = value != 0
    return masks
