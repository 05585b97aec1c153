"""Parameters and FLOPs, dense and sparse (scaled by each layer's density).

The dense counts come from mmengine's ``FlopAnalyzer`` (fvcore's counter:
one fused multiply-add is one "flop", i.e. these are MACs, the unit of the
SLaK/ConvNeXt papers' "FLOPs"). We add only what upstream lacks: a layer's
MACs and weights are multiplied by the density of its weight, which is exact
for convolutions and linear layers (each non-zero weight takes part in one
MAC per output position) and leaves every other op (norms, activations,
up-sampling) dense.

Where the densities come from (``density_source``):

* ``'masks'``: the sparse-training masks saved in a checkpoint
  (``checkpoint['sparsity']['masks']``, read by
  ``mmslak.sparse.masks_from_checkpoint(path, zeros=False)``);
* ``'weights'``: the fraction of non-zero entries of each conv/linear weight
  of the loaded model (what a pruned checkpoint without masks shows);
* ``'uniform'``: an assumed density (``--density 0.6``, the paper's setting)
  for every conv/linear weight whose name starts with ``sparse_prefix``;
  the paper's classifiers are sparse everywhere (head included), its
  downstream models in the backbone only.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..ops import dispatch
from ..sparse import is_sparse_weight, uniform_densities

SPARSE_LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def sparsifiable_layers(model: nn.Module,
                        prefix: str = '') -> Dict[str, nn.Module]:
    """Conv and linear layers whose weight is sparse-trainable
    (:func:`mmslak.sparse.is_sparse_weight`), by module name, restricted to
    names starting with ``prefix``."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, SPARSE_LAYER_TYPES) and isinstance(
            getattr(m, 'weight', None), torch.Tensor) and is_sparse_weight(
                f'{name}.weight', m.weight) and name.startswith(prefix)
    }


def densities_from_weights(model: nn.Module,
                           prefix: str = '') -> Dict[str, float]:
    """Fraction of non-zero weights of each conv/linear layer."""
    return {
        name: float((m.weight != 0).float().mean())
        for name, m in sparsifiable_layers(model, prefix).items()
    }


def densities_from_masks(model: nn.Module,
                         masks: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Density of each layer that has a mask (keys: ``<module>.weight``)."""
    layers = sparsifiable_layers(model)
    densities = {}
    for key, mask in masks.items():
        if not key.endswith('.weight'):
            continue
        name = key[:-len('.weight')]
        if name not in layers:
            raise KeyError(f'mask {key!r} names no conv/linear layer of the '
                           f'model (e.g. {next(iter(layers), None)!r}.weight)')
        if tuple(mask.shape) != tuple(layers[name].weight.shape):
            raise ValueError(f'mask {key!r} has shape {tuple(mask.shape)}, '
                             'the weight '
                             f'{tuple(layers[name].weight.shape)}')
        densities[name] = float(mask.float().mean())
    if not densities:
        raise ValueError('no weight mask found (keys must end in .weight)')
    return densities


def densities_assumed(model: nn.Module,
                      density: float,
                      prefix: str = '') -> Dict[str, float]:
    """``density`` (assumed, e.g. the paper's 0.6) for every conv/linear
    layer of ``model`` under ``prefix``."""
    shapes = {
        name: tuple(m.weight.shape)
        for name, m in sparsifiable_layers(model, prefix).items()
    }
    return uniform_densities(shapes, density)


def count_complexity(model: nn.Module,
                     inputs,
                     densities: Optional[Dict[str, float]] = None) -> dict:
    """Dense and density-scaled parameters and FLOPs (MACs) of a model.

    Args:
        model: called as ``model(*inputs)`` (see
            :class:`mmslak.analysis.TensorForward`).
        inputs: a tensor or a tuple of tensors.
        densities: ``{module name: density}`` of conv/linear layers (see
            the module docstring); others count as dense.

    Returns:
        dict with ``params``, ``nonzero_params``, ``flops`` (dense MACs),
        ``sparse_flops`` and ``layers`` (per layer: density, params, flops).
    """
    from mmengine.analysis import FlopAnalyzer
    densities = densities or {}
    modules = dict(model.named_modules())
    for name, d in densities.items():
        if name not in modules:
            raise KeyError(f'density given for {name!r}, which is not a '
                           'module of the model')
        if not 0 <= d <= 1:
            raise ValueError(f'density of {name!r} is {d}, not in [0, 1]')
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    # the counter must see the nominal convolution: the fast op may crop
    # kernels larger than the feature map or run an FFT, which the tracer
    # would count as fewer (or no) MACs; the papers count full kernels
    with torch.no_grad(), dispatch('reference'):
        by_module = analyzer.by_module()
        dense_flops = analyzer.total()
    params = sum(p.numel() for p in model.parameters())
    layers = {}
    saved_flops = saved_params = 0.
    for name, d in densities.items():
        weight = modules[name].weight
        flops = by_module.get(name, 0)
        layers[name] = dict(density=d, params=weight.numel(), flops=flops)
        saved_flops += flops * (1 - d)
        saved_params += weight.numel() * (1 - d)
    return dict(
        params=params,
        nonzero_params=int(round(params - saved_params)),
        flops=int(dense_flops),
        sparse_flops=int(round(dense_flops - saved_flops)),
        layers=layers)


def format_count(x: float, unit: str = '') -> str:
    """1234567 -> '1.235M' (G for >= 1e9)."""
    for div, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if abs(x) >= div:
            return f'{x / div:.3f}{suffix}{unit}'
    return f'{x:.0f}{unit}'
