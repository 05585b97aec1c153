"""Which weights of a model are trained sparse."""
import re
from collections import OrderedDict
from typing import Dict, Sequence

import torch
import torch.nn as nn

SCOPES = ('all', 'large_kernel')

# Parameter-name suffixes of the Kx5 / 5xK strip kernels of
# ``DecomposedLargeKernelConv`` (see mmslak/models/layers/large_kernel.py).
_LARGE_KERNEL_SUFFIXES = ('.LoRA1.conv.weight', '.LoRA2.conv.weight')


def check_scope(scope: str) -> None:
    """A ValueError naming ``scope`` and the valid ones unless it is one of
    :data:`SCOPES`."""
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')


def is_sparse_weight(name: str,
                     tensor: torch.Tensor,
                     scope: str = 'all') -> bool:
    """Whether a weight is trained sparse: the paper's (and reference's
    ``Masking.add_module``) rule, the one definition every part of mmslak
    uses (the hook, masks read from checkpoints, sparse FLOPs).

    Args:
        name (str): the parameter's name.
        tensor (torch.Tensor): the parameter (or a checkpoint's tensor).
        scope (str): ``'all'``: every 2-D / 4-D floating-point weight;
            ``'large_kernel'``: only the Kx5 / 5xK strip kernels. Defaults
            to 'all'.
    """
    check_scope(scope)
    if not tensor.is_floating_point() or tensor.dim() not in (2, 4):
        return False
    return scope == 'all' or name.endswith(_LARGE_KERNEL_SUFFIXES)


def select_sparse_params(
    model: nn.Module,
    scope: str = 'all',
    exclude: Sequence[str] = ()
) -> 'OrderedDict[str, nn.Parameter]':
    """Return the trainable weights to be masked, in model order.

    Args:
        model: the unwrapped model (names are its ``named_parameters``).
        scope: ``'all'``: every 2-D and 4-D weight (stem, downsampling,
            depthwise and MLP layers, the classifier head);
            ``'large_kernel'``: only the Kx5 / 5xK strip kernels.
        exclude: regular expressions; a name matching any of them
            (``re.search``) stays dense.

    Frozen parameters (``requires_grad=False``) are never selected: they do
    not train, so pruning and regrowing them has no meaning.
    """
    check_scope(scope)
    if isinstance(exclude, str):
        exclude = [exclude]
    patterns = [re.compile(p) for p in exclude]
    selected = OrderedDict()
    for name, param in model.named_parameters():
        if not param.requires_grad or not is_sparse_weight(name, param, scope):
            continue
        if any(p.search(name) for p in patterns):
            continue
        selected[name] = param
    if not selected:
        raise ValueError(
            f'no trainable weight of {type(model).__name__} is in '
            f'scope={scope!r} with exclude={list(exclude)}; nothing to '
            'sparsify (a deployed/fused model has no strip kernels)')
    return selected


def sparse_shapes(params: Dict[str, nn.Parameter]) -> Dict[str, tuple]:
    """Shapes of the selected weights, by name."""
    return {name: tuple(p.shape) for name, p in params.items()}
