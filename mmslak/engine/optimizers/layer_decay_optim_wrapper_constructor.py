"""Layer-wise / stage-wise learning-rate decay for SLaK (and ConvNeXt-like)
backbones inside any OpenMMLab model that has a ``backbone``.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the model
itself for ``get_layer_depth`` (only its classifiers have it), and mmseg's /
mmdet's only accept backbones whose class name contains "ConvNeXt". This
subclass of mmpretrain's hands it the backbone's ``get_layer_depth`` (as
mmpretrain's ConvNeXt and SLaK have) for any model with a ``backbone`` and
adds the stage-wise scheme of the paper's downstream recipes::

    lr(param) = base_lr * decay_rate ** (num_layers + 1 - layer_id)

with ``layer_id`` in ``[0, num_layers + 1]``; everything outside the backbone
(decode head, neck, RPN / RoI heads, classifier head) gets ``num_layers + 1``,
i.e. the full learning rate.

- ``layer_wise``: ``layer_id`` from ``backbone.get_layer_depth``.
- ``stage_wise``: every downsampling layer (stem included) is 0 and the
  blocks of stage ``i`` are ``i + 1``.

As in mmseg / mmdet, 1-D parameters and biases get no weight decay unless
``flat_decay_mult`` / ``bias_decay_mult`` say otherwise.
"""
import re
from typing import Callable, List, Optional, Tuple

import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor

DECAY_TYPES = ('layer_wise', 'stage_wise')
# ours, then what mmpretrain's constructor reads
KEYS = ('decay_rate', 'layer_decay_rate', 'decay_type', 'num_layers',
        'bias_decay_mult', 'norm_decay_mult', 'flat_decay_mult', 'custom_keys')


def _find_backbone(model: nn.Module) -> Tuple[nn.Module, str]:
    """The backbone and the prefix of its parameter names."""
    if hasattr(model, 'backbone'):
        return model.backbone, 'backbone.'
    if hasattr(model, 'get_layer_depth'):
        return model, ''  # a bare backbone
    raise TypeError(
        f'LayerDecayOptimWrapperConstructor needs a model with a `backbone` '
        f'attribute (ImageClassifier, EncoderDecoder, a detector) or a '
        f'backbone with `get_layer_depth`; got {type(model).__name__}')


def stage_wise_layer_id(param_name: str, prefix: str, num_layers: int) -> int:
    """Stage-wise layer id in ``[0, num_layers + 1]`` of a parameter."""
    if not param_name.startswith(prefix):
        return num_layers + 1
    name = param_name[len(prefix):]
    if name.startswith('downsample_layers.'):
        return 0
    match = re.match(r'stages\.(\d+)\.', name)
    return int(match.group(1)) + 1 if match else num_layers + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor for any model with a backbone,
    plus the stage-wise scheme.

    ``optimizer.weight_decay`` is required (0 for none). ``paramwise_cfg``
    keys:

    - ``decay_rate`` (float, required; mmpretrain's ``layer_decay_rate`` is
      accepted too): lr ratio between adjacent layers.
    - ``decay_type`` (str): ``'layer_wise'`` (default) or ``'stage_wise'``.
    - ``num_layers`` (int): number of backbone layers, 6 for SLaK-T and 12
      for SLaK-S/B (ConvNeXt's convention). For ``layer_wise`` it must match
      the backbone's ``get_layer_depth``; defaults to it.
    - mmpretrain's ``bias_decay_mult`` / ``norm_decay_mult`` /
      ``flat_decay_mult`` / ``custom_keys``; ``flat_decay_mult`` and
      ``bias_decay_mult`` default to 0 (mmseg's / mmdet's rule).

    Example::

        optim_wrapper = dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
                               num_layers=6))
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        cfg = dict(paramwise_cfg or {})
        unknown = set(cfg) - set(KEYS)
        if unknown:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor does not support the '
                f'paramwise_cfg keys {sorted(unknown)} (supported: {KEYS})')
        rate = cfg.pop('decay_rate', cfg.get('layer_decay_rate'))
        if rate is None or not 0 < float(rate) <= 1:
            raise ValueError('LayerDecayOptimWrapperConstructor needs '
                             'paramwise_cfg.decay_rate in (0, 1] (e.g. 0.9); '
                             f'got paramwise_cfg={paramwise_cfg}')
        cfg['layer_decay_rate'] = float(rate)
        self.decay_type = cfg.pop('decay_type', 'layer_wise')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'decay_type must be one of {DECAY_TYPES}, '
                             f'got {self.decay_type!r}')
        self.num_layers = cfg.pop('num_layers', None)
        # No default: without weight_decay mmpretrain's constructor leaves it
        # out of every group (the optimizer's own default, AdamW's 0.01, would
        # then decay norms and biases too) and fails with a bare KeyError.
        if optim_wrapper_cfg.get('optimizer', {}).get('weight_decay') is None:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor needs optim_wrapper.'
                'optimizer.weight_decay (e.g. 0.05; 0 for none); got '
                f"optimizer={optim_wrapper_cfg.get('optimizer')}")
        if optim_wrapper_cfg['optimizer']['weight_decay']:
            cfg.setdefault('flat_decay_mult', 0.)
            cfg.setdefault('bias_decay_mult', 0.)
        super().__init__(optim_wrapper_cfg, cfg)

    def _depth_function(self, module: nn.Module) -> Callable:
        """``name -> (layer_id, num_layers + 2)`` for the whole model."""
        backbone, prefix = _find_backbone(module)
        if self.decay_type == 'stage_wise':
            n = self._stage_wise_num_layers(module, backbone, prefix)
            return lambda name: (stage_wise_layer_id(name, prefix, n), n + 2)
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(
                f"decay_type='layer_wise' needs a backbone with "
                f'`get_layer_depth`; {type(backbone).__name__} has none')
        _, total = backbone.get_layer_depth('', prefix=prefix + '@')
        if self.num_layers is not None and self.num_layers != total - 2:
            raise ValueError(
                f'paramwise_cfg.num_layers={self.num_layers} does not '
                f'match the {total - 2} layers of the backbone '
                f'{type(backbone).__name__} (get_layer_depth)')
        return lambda name: backbone.get_layer_depth(name, prefix)

    def _stage_wise_num_layers(self, module: nn.Module, backbone: nn.Module,
                               prefix: str) -> int:
        """``num_layers``, refused when a stage's layer id (``i + 1``) would
        exceed the head's ``num_layers + 1``: its lr would be above the
        base lr."""
        n = self.num_layers
        if n is None:
            raise ValueError("decay_type='stage_wise' needs "
                             'paramwise_cfg.num_layers (6 for SLaK-T, '
                             '12 for SLaK-S/B)')
        deepest = max((stage_wise_layer_id(name, prefix, -1)
                       for name, _ in module.named_parameters()),
                      default=0)
        least = max(deepest - 1, 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < least:
            raise ValueError(
                f"paramwise_cfg.num_layers must be an int for decay_type="
                f"'stage_wise' and the minimum for this model is {least}: "
                f'the {deepest} stages of {type(backbone).__name__} take '
                f'layer ids up to {deepest}, which past num_layers + 1 (the '
                'head) train above the base lr; got '
                f'{n!r} (the paper: 6 for SLaK-T, 12 for SLaK-S/B)')
        return n

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        if get_layer_depth is None:  # the top-level call
            get_layer_depth = self._depth_function(module)
        super().add_params(
            params, module, prefix, get_layer_depth=get_layer_depth, **kwargs)
