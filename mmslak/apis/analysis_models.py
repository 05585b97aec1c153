"""Models for the analysis tools, from configs (or short names).

The tools work on any mmpretrain classifier, mmseg segmentor or mmdet
detector config (and on bare backbones for the ERF); this module hides the
scope and ``custom_imports`` details they share.
"""
import copy
import inspect
from typing import Dict, Optional, Tuple, Union

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

from ..analysis.erf import strip_output_norms
from ..checkpoint import get_state_dict, load_weights, read_checkpoint
from .inference import drop_pretrained_init, init_model, load_config

#: Backbones the ERF tool knows by name, so the paper's comparison needs no
#: config file. ``kernel_sizes`` etc. can still be overridden.
BACKBONE_ALIASES: Dict[str, dict] = {
    'slak-tiny': dict(type='mmpretrain.SLaK', arch='tiny'),
    'slak-small': dict(type='mmpretrain.SLaK', arch='small'),
    'slak-base': dict(type='mmpretrain.SLaK', arch='base'),
    'convnext-tiny': dict(type='mmpretrain.ConvNeXt', arch='tiny'),
    'convnext-small': dict(type='mmpretrain.ConvNeXt', arch='small'),
    'convnext-base': dict(type='mmpretrain.ConvNeXt', arch='base'),
    'replknet-31b': dict(type='mmpretrain.RepLKNet', arch='31B'),
}


def _load_backbone(backbone: nn.Module, checkpoint: str) -> None:
    """Load a classifier, segmentor, detector or backbone checkpoint into
    ``backbone``: its ``backbone.`` keys when the bare keys do not match;
    every backbone weight must be there, extra keys (heads, other output
    norms) are ignored."""
    ckpt = read_checkpoint(checkpoint)
    keys = set(get_state_dict(ckpt))
    prefix = None
    if not keys & set(backbone.state_dict()) and any(
            k.startswith('backbone.') for k in keys):
        prefix = 'backbone.'
    load_weights(
        backbone,
        ckpt,
        prefix=prefix,
        allow_unexpected=('', ),
        source=f'checkpoint {checkpoint!r}')


def _accepted_kwargs(model_cfg: dict, scope: str) -> Optional[set]:
    """Names of the ``__init__`` arguments of the class ``model_cfg`` names
    (None when it cannot be found)."""
    init_default_scope(scope)
    obj_type = model_cfg.get('type')
    if isinstance(obj_type, type):
        cls = obj_type
    else:  # the root registry only sees other scopes through the switch
        with MODELS.switch_scope_and_registry(scope) as registry:
            cls = registry.get(obj_type)
    if cls is None:
        return None
    return set(inspect.signature(cls.__init__).parameters)


def _backbone_cfg(spec: str,
                  cfg_options: Optional[dict] = None) -> Tuple[dict, str]:
    """(backbone config without pretrained init, scope) of an alias or a
    config file."""
    if spec in BACKBONE_ALIASES:
        return copy.deepcopy(BACKBONE_ALIASES[spec]), 'mmpretrain'
    cfg = load_config(spec, cfg_options)
    model_cfg = cfg.model
    backbone_cfg = copy.deepcopy(model_cfg.backbone if 'backbone' in
                                 model_cfg else model_cfg)
    backbone_cfg = backbone_cfg.to_dict() if isinstance(
        backbone_cfg, ConfigDict) else dict(backbone_cfg)
    drop_pretrained_init(backbone_cfg)
    return backbone_cfg, cfg.get('default_scope', 'mmpretrain')


def build_erf_backbone(spec: str,
                       checkpoint: Optional[str] = None,
                       layer_scale: Optional[float] = None,
                       cfg_options: Optional[dict] = None,
                       overrides: Optional[dict] = None,
                       keep_output_norm: bool = False,
                       random_init: str = 'config') -> Tuple[nn.Module, str]:
    """A backbone whose last output is the last stage's feature map (the
    raw stage output: the output norm is removed unless
    ``keep_output_norm``, see :func:`strip_output_norms`).

    Args:
        spec: a name from :data:`BACKBONE_ALIASES` or a config path whose
            ``model.backbone`` (or ``model`` itself) is the backbone.
        checkpoint: weights to load (a classifier, segmentor, detector or
            backbone checkpoint; ``backbone.`` prefixes are handled).
        layer_scale: ``layer_scale_init_value`` to build with (SLaK,
            ConvNeXt). With random weights the default 1e-6 makes every
            residual branch vanish, so the ERF would only show the
            stride-4/2 downsampling convs; use 1.0 to compare architectures
            at random initialisation (ignored when a checkpoint is loaded,
            since the checkpoint sets gamma).
        overrides: extra backbone arguments (e.g. ``kernel_sizes``).
        random_init: ``'config'`` runs the model's ``init_weights()`` (its
            training init, e.g. TruncNormal(0.02) for SLaK/ConvNeXt);
            ``'pytorch'`` keeps PyTorch's per-layer defaults, whose scale
            follows the fan-in (so a larger kernel is not just a larger
            sum of equally scaled weights). A checkpoint overrides either.

    Returns:
        (backbone in eval mode, scope used)
    """
    backbone_cfg, scope = _backbone_cfg(spec, cfg_options)
    accepted = _accepted_kwargs(backbone_cfg, scope) or set()
    # The ERF is measured on the last stage's spatial map, deterministically.
    wanted = dict(drop_path_rate=0.)
    if 'gap_before_final_norm' in accepted:  # SLaK, ConvNeXt
        wanted.update(gap_before_final_norm=False, out_indices=[-1])
    if layer_scale is not None and checkpoint is None:
        wanted['layer_scale_init_value'] = layer_scale
    backbone_cfg.update({k: v for k, v in wanted.items() if k in accepted})
    backbone_cfg.update(overrides or {})
    init_default_scope(scope)
    backbone = MODELS.build(backbone_cfg)
    if random_init not in ('config', 'pytorch'):
        raise ValueError("random_init must be 'config' or 'pytorch', got "
                         f'{random_init!r}')
    if random_init == 'config' and hasattr(backbone, 'init_weights'):
        backbone.init_weights()
    if checkpoint is not None:
        _load_backbone(backbone, checkpoint)
    if not keep_output_norm:
        strip_output_norms(backbone)
    backbone.eval()  # not chained: ConvNeXt's train() returns None
    return backbone, scope


def build_model(config: Union[str, Config],
                checkpoint: Optional[str] = None,
                cfg_options: Optional[dict] = None,
                drop_auxiliary_head: bool = True) -> nn.Module:
    """:func:`init_model` (pretrained ``init_cfg`` dropped,
    ``checkpoint`` loaded strictly), then, for counting and timing, SyncBN
    reverted to BN and, like mmseg's ``get_flops``, a segmentor's
    auxiliary head (used only in training) removed."""
    model = init_model(config, checkpoint, cfg_options=cfg_options)
    if drop_auxiliary_head and getattr(model, 'auxiliary_head',
                                       None) is not None:
        model.auxiliary_head = None
    return revert_sync_batchnorm(model).eval()
