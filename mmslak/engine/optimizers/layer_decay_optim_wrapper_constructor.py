"""Layer-wise / stage-wise learning-rate decay for SLaK (and ConvNeXt-like)
backbones inside any OpenMMLab model that has a ``backbone``.

mmseg's and mmdet's ``LearningRateDecayOptimizerConstructor`` only accept
backbones whose class name contains "ConvNeXt"; this constructor asks the
backbone itself (``get_layer_depth``, as mmpretrain's ConvNeXt and SLaK have)
and follows the same formula, so the paper's downstream recipes run
unchanged::

    lr(param) = base_lr * decay_rate ** (num_layers + 1 - layer_id)

with ``layer_id`` in ``[0, num_layers + 1]``; everything outside the backbone
(decode head, neck, RPN / RoI heads, classifier head) gets ``num_layers + 1``,
i.e. the full learning rate.

- ``layer_wise``: ``layer_id`` from ``backbone.get_layer_depth`` (stem 0,
  stages 1 and 2 -> 1, 2, stage 3 in groups of three blocks, stage 4 ->
  ``num_layers``).
- ``stage_wise``: every downsampling layer (stem included) is 0 and the
  blocks of stage ``i`` are ``i + 1``.

As in mmseg / mmdet, 1-D parameters and biases get no weight decay.
"""
import re
from typing import List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

DECAY_TYPES = ('layer_wise', 'stage_wise')


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


def get_layer_id(param_name: str,
                 backbone: nn.Module,
                 prefix: str,
                 num_layers: int,
                 decay_type: str = 'layer_wise') -> int:
    """Layer id in ``[0, num_layers + 1]`` of a (full) parameter name."""
    if not param_name.startswith(prefix):
        return num_layers + 1
    if decay_type == 'layer_wise':
        layer_id, _ = backbone.get_layer_depth(param_name, prefix)
        return layer_id
    if decay_type == 'stage_wise':
        name = param_name[len(prefix):]
        if name.startswith('downsample_layers.'):
            return 0
        match = re.match(r'stages\.(\d+)\.', name)
        if match:
            return int(match.group(1)) + 1
        return num_layers + 1
    raise ValueError(f'decay_type must be one of {DECAY_TYPES}, '
                     f'got {decay_type!r}')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with layer-wise lr decay.

    ``paramwise_cfg`` keys:

    - ``decay_rate`` (float, required): lr ratio between adjacent layers.
    - ``decay_type`` (str): ``'layer_wise'`` (default) or ``'stage_wise'``.
    - ``num_layers`` (int): number of backbone layers, 6 for SLaK-T and 12
      for SLaK-S/B (ConvNeXt's convention). For ``layer_wise`` it must match
      the backbone's ``get_layer_depth``; defaults to it.

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
        given = dict(paramwise_cfg or {})
        paramwise_cfg = dict(given)
        if 'decay_rate' not in paramwise_cfg:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor needs '
                'paramwise_cfg.decay_rate (e.g. 0.9); got paramwise_cfg='
                f'{paramwise_cfg}')
        self.decay_rate = float(paramwise_cfg.pop('decay_rate'))
        if not 0 < self.decay_rate <= 1:
            raise ValueError(
                f'decay_rate must be in (0, 1], got {self.decay_rate}')
        self.decay_type = paramwise_cfg.pop('decay_type', 'layer_wise')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'decay_type must be one of {DECAY_TYPES}, '
                             f'got {self.decay_type!r}')
        self.num_layers = paramwise_cfg.pop('num_layers', None)
        if paramwise_cfg:
            raise ValueError(
                'LayerDecayOptimWrapperConstructor does not support the '
                f'paramwise_cfg keys {sorted(paramwise_cfg)} (supported: '
                'decay_rate, decay_type, num_layers)')
        # non-empty paramwise_cfg: makes the base class call add_params
        super().__init__(optim_wrapper_cfg, given)

    def _resolve_num_layers(self, backbone: nn.Module, prefix: str) -> int:
        if self.decay_type == 'layer_wise':
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f"decay_type='layer_wise' needs a backbone with "
                    f'`get_layer_depth`; {type(backbone).__name__} has none')
            _, total = backbone.get_layer_depth('', prefix=prefix + '@')
            own = total - 2
            if self.num_layers is not None and self.num_layers != own:
                raise ValueError(
                    f'paramwise_cfg.num_layers={self.num_layers} does not '
                    f'match the {own} layers of the backbone '
                    f'{type(backbone).__name__} (get_layer_depth)')
            return own
        if self.num_layers is None:
            raise ValueError("decay_type='stage_wise' needs "
                             'paramwise_cfg.num_layers (6 for SLaK-T, '
                             '12 for SLaK-S/B)')
        return int(self.num_layers)

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        backbone, prefix = _find_backbone(module)
        num_layers = self._resolve_num_layers(backbone, prefix)
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen stages
            if param.ndim == 1 or name.endswith('.bias'):
                decay, weight_decay = 'no_decay', 0.
            else:
                decay, weight_decay = 'decay', self.base_wd
            layer_id = get_layer_id(name, backbone, prefix, num_layers,
                                    self.decay_type)
            key = f'layer_{layer_id}_{decay}'
            if key not in groups:
                scale = self.decay_rate**(num_layers + 1 - layer_id)
                groups[key] = dict(
                    params=[],
                    param_names=[],
                    lr=self.base_lr * scale,
                    lr_scale=scale,
                    layer_id=layer_id,
                    group_name=key)
                if weight_decay is not None:
                    groups[key]['weight_decay'] = weight_decay
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        summary = ', '.join(f'{k}: lr {g["lr"]:.3g} ({len(g["params"])})'
                            for k, g in sorted(groups.items()))
        print_log(
            f'layer decay ({self.decay_type}, rate {self.decay_rate}, '
            f'{num_layers} layers): {summary}',
            logger='current')
        params.extend(groups.values())
