"""Build models from configs (or short names) for the analysis tools.

The tools work on any mmpretrain classifier, mmseg segmentor or mmdet
detector config (and on bare backbones for the ERF); this module hides the
scope, ``custom_imports`` and dummy-input details they share.
"""
import copy
from functools import partial
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict

from mmslak.apis import drop_pretrained_init, load_config

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


def build_from_cfg(model_cfg: dict, scope: str) -> nn.Module:
    """Build ``model_cfg`` from the registry of ``scope`` (mmpretrain,
    mmseg or mmdet)."""
    from mmengine.registry import MODELS, init_default_scope

    import mmslak  # noqa: F401
    init_default_scope(scope)
    return MODELS.build(model_cfg)


def load_weights(module: nn.Module,
                 checkpoint: str,
                 prefix: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """Load ``checkpoint`` into ``module`` (non-strict, but an error if no
    key matches).

    Accepts mmengine checkpoints (``state_dict``) and the reference's
    (``model``). ``prefix`` (e.g. ``'backbone.'``) is stripped from the keys
    that have it, and the others dropped; ``None`` strips ``'backbone.'``
    only when that is needed for the keys to match.

    Returns:
        (missing keys, unexpected keys)
    """
    from mmslak.checkpoint import get_state_dict, read_checkpoint
    state = get_state_dict(read_checkpoint(checkpoint))
    own = set(module.state_dict())
    if prefix is None and not own & set(state) and any(
            k.startswith('backbone.') for k in state):
        prefix = 'backbone.'
    if prefix:
        state = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
    if not own & set(state):
        raise ValueError(
            f'no key of {checkpoint} matches the model (model keys look like '
            f'{sorted(own)[:2]}, checkpoint keys like {sorted(state)[:2]})')
    result = module.load_state_dict(state, strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)


def _accepted_kwargs(model_cfg: dict, scope: str) -> Optional[set]:
    """Names of the ``__init__`` arguments of the class ``model_cfg`` names
    (None when it cannot be found)."""
    import inspect

    from mmengine.registry import MODELS, init_default_scope
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
    backbone = build_from_cfg(backbone_cfg, scope)
    if random_init not in ('config', 'pytorch'):
        raise ValueError("random_init must be 'config' or 'pytorch', got "
                         f'{random_init!r}')
    if random_init == 'config' and hasattr(backbone, 'init_weights'):
        backbone.init_weights()
    if checkpoint is not None:
        load_weights(backbone, checkpoint)
    if not keep_output_norm:
        strip_output_norms(backbone)
    backbone.eval()  # not chained: ConvNeXt's train() returns None
    return backbone, scope


def strip_output_norms(backbone: nn.Module) -> int:
    """Replace the per-stage output norms (``norm{i}``, as mmpretrain's
    ConvNeXt and SLaK name them)
    by identities, so the backbone returns the raw stage outputs.

    The ERF needs this: with a LayerNorm of unit weight at the output, the
    channel sum of the centre pixel is a constant (zero gradient).
    Returns the number of norms replaced.
    """
    names = {f'norm{i}' for i in getattr(backbone, 'out_indices', ())}
    replaced = 0
    for name in sorted(names):
        if isinstance(getattr(backbone, name, None), nn.Module):
            setattr(backbone, name, nn.Identity())
            replaced += 1
    return replaced


# ------------------------------------------------------------- full models
def task_of(model: nn.Module) -> str:
    """'classification', 'segmentation', 'detection' or 'backbone'."""
    mro = [c.__module__ + '.' + c.__name__ for c in type(model).__mro__]
    if any(
            n.startswith('mmseg.') and n.endswith('BaseSegmentor')
            for n in mro):
        return 'segmentation'
    if any(n.startswith('mmdet.') and n.endswith('BaseDetector') for n in mro):
        return 'detection'
    if any(
            n.startswith('mmpretrain.') and n.endswith('BaseClassifier')
            for n in mro):
        return 'classification'
    return 'backbone'


def build_model(config: Union[str, Config],
                checkpoint: Optional[str] = None,
                cfg_options: Optional[dict] = None,
                drop_auxiliary_head: bool = True) -> nn.Module:
    """:func:`mmslak.apis.init_model` (pretrained ``init_cfg`` dropped,
    ``checkpoint`` loaded strictly), then, for counting and timing, SyncBN
    reverted to BN and, like mmseg's ``get_flops``, a segmentor's
    auxiliary head (used only in training) removed."""
    from mmengine.model import revert_sync_batchnorm

    from mmslak.apis import init_model
    model = init_model(config, checkpoint, cfg_options=cfg_options)
    if drop_auxiliary_head and getattr(model, 'auxiliary_head',
                                       None) is not None:
        model.auxiliary_head = None
    return revert_sync_batchnorm(model).eval()


def dummy_inputs(
    model: nn.Module,
    shape: Tuple[int, int],
    batch_size: int = 1,
    device: Union[str, torch.device] = 'cpu'
) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Random (N, 3, H, W) inputs and the keyword arguments that make
    ``model(inputs, **kwargs)`` run its plain tensor forward (no
    post-processing), for any of the supported tasks."""
    h, w = shape
    inputs = torch.rand(batch_size, 3, h, w, device=device)
    task = task_of(model)
    if task == 'backbone':
        return inputs, {}
    meta = dict(
        img_shape=(h, w),
        ori_shape=(h, w),
        pad_shape=(h, w),
        batch_input_shape=(h, w),
        scale_factor=(1., 1.))
    if task == 'segmentation':
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=meta) for _ in range(batch_size)]
    elif task == 'detection':
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=meta) for _ in range(batch_size)]
    else:
        samples = None
    return inputs, dict(data_samples=samples, mode='tensor')


class TensorForward:
    """Context manager making ``model.forward(x)`` the tensor forward.

    Tracers (mmengine's FlopAnalyzer) call ``model(x)``; this binds the data
    samples and ``mode='tensor'`` for the duration, keeping module names
    unchanged (so they match checkpoint and mask names).
    """

    def __init__(self, model: nn.Module, kwargs: Dict[str, Any]) -> None:
        self.model = model
        self.kwargs = kwargs

    def __enter__(self) -> nn.Module:
        if self.kwargs:
            self.model.forward = partial(
                type(self.model).forward, self.model, **self.kwargs)
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.__dict__.pop('forward', None)
