"""The task family of a config or a model: ``'mmpretrain'`` (image
classification), ``'mmseg'`` (semantic segmentation) or ``'mmdet'``
(detection), the one vocabulary the tools and the library use."""
from typing import Optional, Union

import torch.nn as nn
from mmengine.config import Config

FAMILIES = ('mmpretrain', 'mmseg', 'mmdet')

# The upstream base class (module prefix, class name) that marks a model
# of each family.
_BASE_CLASSES = (('mmseg', 'BaseSegmentor'), ('mmdet', 'BaseDetector'),
                 ('mmpretrain', 'BaseClassifier'))


def _model_family(model: nn.Module) -> Optional[str]:
    for cls in type(model).__mro__:
        for family, base in _BASE_CLASSES:
            if cls.__name__ == base and cls.__module__.startswith(family +
                                                                  '.'):
                return family
    return None


def _config_family(cfg: Union[Config, dict]) -> str:
    scope = cfg.get('default_scope')
    if scope in FAMILIES:
        return scope
    model = cfg.get('model') or {}
    if model.get('_scope_') in FAMILIES:
        return model['_scope_']
    model_type = str(model.get('type', ''))
    prefix = model_type.split('.')[0] if '.' in model_type else ''
    if prefix in FAMILIES:
        return prefix
    if model_type == 'ImageClassifier':
        return 'mmpretrain'
    if model_type in ('EncoderDecoder', 'CascadeEncoderDecoder'):
        return 'mmseg'
    raise ValueError(
        f'cannot tell the task of this config: default_scope={scope!r}, '
        f'model.type={model_type!r}; set default_scope to one of '
        f'{FAMILIES}')


def task_family(config_or_model: Union[Config, dict,
                                       nn.Module]) -> Optional[str]:
    """One of :data:`FAMILIES`.

    Args:
        config_or_model (Config | dict | nn.Module): a config, told by its
            ``default_scope`` (set by every upstream ``default_runtime``),
            else its model's ``_scope_`` or type; or a model, told by the
            upstream base class it derives from (mmseg ``BaseSegmentor``,
            mmdet ``BaseDetector``, mmpretrain ``BaseClassifier``).

    Returns:
        str | None: the family; None for a model of none of them (a bare
        backbone).

    Raises:
        ValueError: a config whose family cannot be told.
    """
    if isinstance(config_or_model, nn.Module):
        return _model_family(config_or_model)
    return _config_family(config_or_model)
