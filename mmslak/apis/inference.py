"""The one config -> model path of mmslak (every tool builds through it).

Like mmseg's ``init_model`` / mmdet's ``init_detector`` / mmpretrain's
``get_model``, but for any of the three task families (told apart by the
config), and the checkpoint is read weights-only with mmslak's clear errors.
"""
import copy
import warnings
from pathlib import Path
from typing import Optional, Union

import torch.nn as nn
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import DATASETS, MODELS, init_default_scope
from mmengine.utils import import_modules_from_strings

from ..checkpoint import load_weights, read_checkpoint
from ..utils import edit_dicts, task_family
from .config_file import read_config_file

ConfigType = Union[str, Path, Config]


def load_config(config: ConfigType,
                cfg_options: Optional[dict] = None) -> Config:
    """A config from a path (``pkg::path`` prefixes work) or a Config (then
    copied), ``cfg_options`` merged, ``mmslak`` and the config's
    ``custom_imports`` imported (``mmslak`` itself is: this module is
    part of it)."""
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, (str, Path)) and '::' in str(config):
        cfg = get_config(str(config))
    elif isinstance(config, (str, Path)):
        cfg = read_config_file(str(config))
    else:
        raise TypeError('config must be a filename or a Config object, got '
                        f'{type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    imports = cfg.get('custom_imports')
    if imports:
        import_modules_from_strings(**imports)
    return cfg


def drop_pretrained_init(cfg: Union[dict, list]) -> int:
    """Remove ``init_cfg=dict(type='Pretrained...')`` entries in place (as
    upstream ``init_model`` functions do: nothing is downloaded; a
    checkpoint given to :func:`init_model` is loaded instead).

    Returns the number of entries removed.
    """

    def pretrained(init) -> bool:
        return isinstance(init, dict) and str(init.get(
            'type', '')).startswith('Pretrained')

    def drop(node: dict) -> int:
        removed = 0
        init = node.get('init_cfg')
        if pretrained(init):
            node['init_cfg'] = None
            removed += 1
        elif isinstance(init, list):
            kept = [c for c in init if not pretrained(c)]
            removed += len(init) - len(kept)
            node['init_cfg'] = kept or None
        if node.get('pretrained') is not None:
            node['pretrained'] = None
            removed += 1
        return removed

    return edit_dicts(cfg, drop)


def _dataset_meta(checkpoint: Optional[dict], cfg: Config) -> Optional[dict]:
    """``dataset_meta`` from the checkpoint (mmengine's ``dataset_meta`` or
    the 0.x/2.x ``CLASSES``/``PALETTE``), else the test dataset class's
    ``METAINFO`` updated by the config's ``metainfo`` (nothing is read)."""
    meta = (checkpoint or {}).get('meta') or {}
    if 'dataset_meta' in meta:
        return dict(meta['dataset_meta'])
    if 'CLASSES' in meta:
        found = dict(classes=meta['CLASSES'])
        if 'PALETTE' in meta:
            found['palette'] = meta['PALETTE']
        return found
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    if not dataset.get('type'):
        return None
    with DATASETS.switch_scope_and_registry(task_family(cfg)) as registry:
        cls = registry.get(dataset['type'])
    if cls is None or not hasattr(cls, 'METAINFO'):
        return None
    return {**copy.deepcopy(cls.METAINFO), **dict(dataset.get('metainfo', {}))}


def init_model(config: ConfigType,
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of an mmpretrain / mmseg / mmdet config, in eval
    mode on ``device``.

    Pretrained ``init_cfg`` entries are dropped (nothing is downloaded;
    the weights are PyTorch's defaults unless ``checkpoint`` is given).
    ``checkpoint`` is read weights-only (local path or URL) and must match
    the model exactly, else :class:`~mmslak.checkpoint.CheckpointMismatchError`
    lists the keys. As upstream, ``model.cfg`` is the config and
    ``model.dataset_meta`` comes from the checkpoint's meta, else from the
    config's test dataset.
    """
    cfg = load_config(config, cfg_options)
    family = task_family(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        # mmpretrain configs keep it top-level; mmengine's Runner (not
        # MODELS.build) moves it into the model: without it, no mean/std
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    drop_pretrained_init(model_cfg)
    init_default_scope(cfg.get('default_scope') or family)
    model = MODELS.build(model_cfg)
    ckpt = None
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint, map_location='cpu')
        load_weights(model, ckpt, source=f'checkpoint {checkpoint!r}')
    dataset_meta = _dataset_meta(ckpt, cfg)
    if dataset_meta is not None:
        model.dataset_meta = dataset_meta
    elif family != 'mmpretrain':
        warnings.warn('no dataset_meta in the checkpoint nor in the '
                      "config's test dataset: model.dataset_meta not set")
    model.cfg = cfg
    model.to(device)
    model.eval()
    return model
