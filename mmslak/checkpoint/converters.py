"""Converters between the published SLaK checkpoint layouts and mmslak.

Source layouts handled:

* reference ImageNet (VITA-Group/SLaK ``main.py``): ``{'model': sd}``,
  optionally ``model_ema`` (timm ``ModelEma`` state dict), keys possibly
  prefixed ``module.``; head ``head.weight/bias``, final norm ``norm.*``.
* mmseg 0.x UperNet (reference ``Segmentation/``): ``{'meta', 'state_dict',
  'optimizer'}``. The model keys (``backbone.*``, ``decode_head.*``,
  ``auxiliary_head.*``) are unchanged in mmseg 1.x, whose own model zoo
  serves its 0.x files; what changed is the meta: ``CLASSES`` /
  ``PALETTE`` became ``meta['dataset_meta']['classes' / 'palette']``.
* mmdet 2.x Cascade Mask R-CNN (reference ``Detection/``): likewise, keys
  (``backbone``, ``neck``, ``rpn_head``, ``roi_head.{bbox,mask}_head.i``)
  unchanged in mmdet 3.x (whose model zoo serves 2.x files), ``CLASSES``
  moved to ``meta['dataset_meta']['classes']``.

Every conversion returns the new checkpoint and a report of the mapping;
:func:`~.loading.check_state_dict` refuses missing, leftover or mismatched
keys, and :func:`save_converted` writes atomically, so no partial file is left.
"""
import argparse
import io
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .atomic import atomic_write_bytes
from .loading import CheckpointError, CheckpointMismatchError, get_state_dict

__all__ = [
    'ConversionReport', 'slak_to_mmpretrain', 'mmpretrain_to_slak',
    'mmseg0x_to_mmseg1x', 'mmdet2x_to_mmdet3x', 'save_converted',
    'trained_or_ema_weights', 'REFERENCE_TRAINING_GLOBALS'
]


class ConversionReport:
    """What a conversion did: renamed keys, dropped entries, notes."""

    def __init__(self) -> None:
        self.renames: List[Tuple[str, str]] = []
        self.dropped: List[str] = []
        self.notes: List[str] = []

    def summary(self, verbose: bool = False) -> str:
        groups: Dict[Tuple[str, str], int] = OrderedDict()
        for src, dst in self.renames:
            key = _pattern(src, dst)
            groups[key] = groups.get(key, 0) + 1
        lines = [f'mapped {len(self.renames)} keys:']
        for (src, dst), n in groups.items():
            lines.append(f'  {src} -> {dst}  ({n} keys)' if src !=
                         dst else f'  {src}  ({n} keys, names unchanged)')
        if verbose:
            lines += [f'    {s} -> {d}' for s, d in self.renames]
        if self.dropped:
            lines.append('dropped: ' + ', '.join(self.dropped))
        lines += self.notes
        return '\n'.join(lines)


def _named_tensors(checkpoint: dict,
                   keys: Tuple[str,
                               ...]) -> List[Tuple[str, str, torch.Tensor]]:
    """(name in the file, name without DDP's ``module.``, tensor)."""
    raw = get_state_dict(checkpoint, keys=keys, strip_prefixes=())
    return [
        (name, name[len('module.'):] if name.startswith('module.') else name,
         value) for name, value in raw.items()
    ]


def _pattern(src: str, dst: str) -> Tuple[str, str]:
    """Common suffix replaced by '*': 'module.norm.weight' ->
    'backbone.norm.weight' gives ('module.*', 'backbone.*')."""
    s, d = src.split('.'), dst.split('.')
    n = 0
    while n < min(len(s), len(d)) and s[-1 - n] == d[-1 - n]:
        n += 1
    if n == 0:
        return src, dst
    return ('.'.join(s[:-n] + ['*']), '.'.join(d[:-n] + ['*']))


# The reference training script stores its argparse.Namespace under 'args'.
REFERENCE_TRAINING_GLOBALS = [argparse.Namespace]


def trained_or_ema_weights(checkpoint: dict,
                           ema: bool = False
                           ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The trained (default) or EMA weights of an mmengine checkpoint, and
    a phrase saying which were taken.

    mmengine's ``EMAHook`` swaps the averaged weights into ``state_dict``
    when it saves (so the file loads as its EMA model) and keeps the trained
    ones under ``ema_state_dict['module.<key>']``. The reference's
    downstream configs load the trained (non-EMA) ``model`` weights.
    """
    state = get_state_dict(
        checkpoint, keys=('state_dict', ), strip_prefixes=())
    averaged = checkpoint.get('ema_state_dict')
    if not isinstance(averaged, dict) or not any(
            k.startswith('module.') for k in averaged):
        if ema:
            raise CheckpointError(
                '--ema asked for the EMA weights but the checkpoint has no '
                "'ema_state_dict' (trained without EMAHook); its keys: "
                f'{sorted(checkpoint)}')
        return state, 'its only weights (no EMAHook state in the checkpoint)'
    if ema:
        return state, ("the EMA weights ('state_dict', where mmengine's "
                       'EMAHook saves them)')
    missing = [k for k in state if 'module.' + k not in averaged]
    if missing:
        raise CheckpointError(
            "the checkpoint's ema_state_dict lacks the trained weights of "
            f'{len(missing)} keys: {missing[:10]}')
    return OrderedDict((k, averaged['module.' + k]) for k in state), (
        "the trained, non-EMA weights (ema_state_dict['module.*'], where "
        "mmengine's EMAHook keeps them; --ema takes the EMA weights)")


def _is_mmslak_checkpoint(checkpoint) -> bool:
    """An mmengine / mmslak checkpoint (``state_dict`` with ``backbone.*``
    keys), not the reference's ``{'model': ...}``."""
    state = checkpoint.get('state_dict') if isinstance(checkpoint,
                                                       dict) else None
    return isinstance(state, dict) and any(
        k.startswith('backbone.') for k in state)


def _extract_mmslak(checkpoint: dict, ema: bool,
                    backbone_only: bool) -> Tuple[dict, ConversionReport]:
    """Our own ImageNet checkpoint -> the same layout, trained (default) or
    EMA weights, optionally the backbone only."""
    report = ConversionReport()
    weights, which = trained_or_ema_weights(checkpoint, ema)
    report.notes.append(f'took {which}')
    report.dropped += [k for k in checkpoint if k != 'state_dict']
    state_dict = OrderedDict()
    for name, value in weights.items():
        if backbone_only and not name.startswith('backbone.'):
            report.dropped.append(name)
            continue
        state_dict[name] = value
        report.renames.append((name, name))
    meta = dict(converted_from='mmslak ImageNet checkpoint (' +
                ('EMA' if ema else 'trained') + ' weights)')
    return dict(meta=meta, state_dict=state_dict), report


def _last_stage(names) -> int:
    """Index of the last stage (``stages.<i>.``) among backbone key names;
    the reference classifier's final ``norm.`` is that stage's ``norm{i}``
    in mmslak (mmpretrain's ConvNeXt naming)."""
    stages = [
        int(n.split('.')[1]) for n in names
        if n.startswith('stages.') and n.split('.')[1].isdigit()
    ]
    if not stages:
        raise CheckpointError('no backbone stage (stages.<i>.*) among the '
                              'checkpoint keys: not a SLaK checkpoint')
    return max(stages)


def _classifier_final_norm(names: List[str]) -> Optional[str]:
    """``'backbone.norm{last}.'`` when it is the backbone's only output norm
    (a classifier: the reference's ``norm.``), else None (a dense backbone
    keeps its ``norm{i}`` names)."""
    backbone = [
        n[len('backbone.'):] for n in names if n.startswith('backbone.')
    ]
    norms = {n.split('.')[0] for n in backbone if re.match(r'norm\d+\.', n)}
    final = f'norm{_last_stage(backbone)}'
    return f'backbone.{final}.' if norms == {final} else None


def slak_to_mmpretrain(checkpoint: dict,
                       ema: bool = False,
                       backbone_only: bool = False
                       ) -> Tuple[dict, ConversionReport]:
    """Reference ImageNet checkpoint -> mmpretrain ImageClassifier.

    ``backbone.<key>`` for every backbone key, except the final norm
    ``norm.*``, which becomes ``backbone.norm3.*`` (the last stage's output
    norm, mmpretrain's ConvNeXt naming); ``head.fc.{weight,bias}`` for
    ``head.*``; with ``backbone_only`` the head is dropped and the result is
    meant for ``init_cfg=dict(type='Pretrained', checkpoint=...,
    prefix='backbone.')``.

    Given one of our own ImageNet checkpoints (``state_dict`` with
    ``backbone.*`` keys) it extracts instead: the trained, non-EMA weights
    by default, the EMA weights with ``ema`` (see
    :func:`trained_or_ema_weights`); the report says which it took.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError('expected a checkpoint dict, got '
                              f'{type(checkpoint).__name__}')
    if _is_mmslak_checkpoint(checkpoint):
        return _extract_mmslak(checkpoint, ema, backbone_only)
    report = ConversionReport()
    key = 'model_ema' if ema else 'model'
    if ema and 'model_ema' not in checkpoint:
        raise CheckpointError(
            '--ema asked for the EMA weights but the checkpoint has no '
            f"'model_ema' entry (its keys: {sorted(checkpoint)})")
    source = _named_tensors(checkpoint, keys=(key, 'state_dict'))
    for name in checkpoint:
        if name not in (key, ):
            report.dropped.append(name)
    state_dict = OrderedDict()
    final_norm = f'norm{_last_stage(name for _, name, _ in source)}.'
    for orig, name, value in source:
        if name.startswith('head.'):
            if backbone_only:
                report.dropped.append(orig)
                continue
            new = 'head.fc.' + name[len('head.'):]
        elif name.startswith('norm.'):
            new = 'backbone.' + final_norm + name[len('norm.'):]
        else:
            new = 'backbone.' + name
        state_dict[new] = value
        report.renames.append((orig, new))
    meta = dict(converted_from='SLaK reference ImageNet checkpoint' +
                (' (EMA weights)' if ema else ''))
    return dict(meta=meta, state_dict=state_dict), report


def mmpretrain_to_slak(checkpoint: dict,
                       backbone_only: bool = False
                       ) -> Tuple[dict, ConversionReport]:
    """mmslak (mmpretrain ImageClassifier, or any model with a
    ``backbone.``) checkpoint -> reference layout ``{'model': sd}``.

    Keys outside ``backbone.*`` and ``head.fc.*`` are refused unless
    ``backbone_only`` (then they, and the head, are dropped). Sparse masks
    (``checkpoint['sparsity']``) are dropped: the reference code rebuilds
    them from ``weight != 0``, and masked weights are zero. The last
    stage's output norm ``backbone.norm3.*`` becomes the reference's final
    ``norm.*``. A checkpoint written with mmengine's ``EMAHook`` gives the
    trained weights as ``model`` and the EMA weights as ``model_ema``, the
    reference's layout (see :func:`trained_or_ema_weights`).
    """
    if _is_mmslak_checkpoint(checkpoint) and isinstance(
            checkpoint.get('ema_state_dict'), dict):
        trained, which = trained_or_ema_weights(checkpoint)
        averaged, _ = trained_or_ema_weights(checkpoint, ema=True)
        converted, report = mmpretrain_to_slak(
            dict(state_dict=trained), backbone_only)
        converted['model_ema'] = mmpretrain_to_slak(
            dict(state_dict=averaged), backbone_only)[0]['model']
        report.dropped = [k for k in checkpoint if k != 'state_dict']
        report.notes.append(f"'model': {which}; 'model_ema': the EMA "
                            "weights ('state_dict')")
        return converted, report
    report = ConversionReport()
    source = _named_tensors(checkpoint, keys=('state_dict', 'model'))
    if isinstance(checkpoint, dict):
        report.dropped += [k for k in checkpoint if k != 'state_dict']
    state_dict, leftover = OrderedDict(), []
    final_norm = _classifier_final_norm([name for _, name, _ in source])
    for orig, name, value in source:
        if final_norm and name.startswith(final_norm):
            new = 'norm.' + name[len(final_norm):]
        elif name.startswith('backbone.'):
            new = name[len('backbone.'):]
        elif name.startswith('head.fc.') and not backbone_only:
            new = 'head.' + name[len('head.fc.'):]
        elif backbone_only:
            report.dropped.append(orig)
            continue
        else:
            leftover.append(orig)
            continue
        state_dict[new] = value
        report.renames.append((orig, new))
    if leftover:
        raise CheckpointMismatchError(
            'keys with no counterpart in the reference ImageNet layout '
            f'({len(leftover)}): {leftover[:20]}; pass --backbone-only to '
            'keep only the backbone')
    return dict(model=state_dict), report


def _upgrade_meta(meta: Optional[dict], report: ConversionReport,
                  version_key: str) -> dict:
    meta = dict(meta or {})
    dataset_meta = dict(meta.pop('dataset_meta', None) or {})
    for old, new in (('CLASSES', 'classes'), ('PALETTE', 'palette')):
        if old in meta:
            value = meta.pop(old)
            dataset_meta[new] = list(value) if isinstance(value,
                                                          tuple) else value
            report.notes.append(f"meta['{old}'] -> "
                                f"meta['dataset_meta']['{new}']")
    if dataset_meta:
        meta['dataset_meta'] = dataset_meta
    # mmcv 1.x runner bookkeeping has no meaning for mmengine.
    for stale in ('hook_msgs', 'mmcv_version', 'epoch', 'iter'):
        if stale in meta:
            meta.pop(stale)
            report.dropped.append(f"meta['{stale}']")
    if version_key in meta:
        meta[f'converted_from_{version_key}'] = meta.pop(version_key)
    return meta


def _downstream_upgrade(checkpoint: dict, version_key: str,
                        renames: Sequence[Tuple[str, str]]
                        ) -> Tuple[dict, ConversionReport]:
    report = ConversionReport()
    source = _named_tensors(checkpoint, keys=('state_dict', ))
    for name in checkpoint:
        if name not in ('state_dict', 'meta'):
            report.dropped.append(name)
    state_dict = OrderedDict()
    for orig, name, value in source:
        new = name
        for old_prefix, new_prefix in renames:
            if new.startswith(old_prefix):
                new = new_prefix + new[len(old_prefix):]
        state_dict[new] = value
        report.renames.append((orig, new))
    meta = _upgrade_meta(checkpoint.get('meta'), report, version_key)
    return dict(meta=meta, state_dict=state_dict), report


def mmseg0x_to_mmseg1x(checkpoint: dict) -> Tuple[dict, ConversionReport]:
    """mmseg 0.x UperNet (+ FCN auxiliary head) checkpoint -> mmseg 1.x.

    Model keys are identical between the versions (UPerHead
    ``psp_modules/bottleneck/lateral_convs/fpn_convs/fpn_bottleneck/
    conv_seg``, FCNHead ``convs/conv_seg``); the optimizer (mmcv 1.x
    format) is dropped and ``CLASSES``/``PALETTE`` move to
    ``dataset_meta``."""
    return _downstream_upgrade(checkpoint, 'mmseg_version', ())


def mmdet2x_to_mmdet3x(checkpoint: dict) -> Tuple[dict, ConversionReport]:
    """mmdet 2.x Cascade Mask R-CNN checkpoint -> mmdet 3.x (same model
    keys; optimizer dropped, ``CLASSES`` moved to ``dataset_meta``)."""
    return _downstream_upgrade(checkpoint, 'mmdet_version', ())


def save_converted(checkpoint: dict, filepath: str) -> None:
    """Serialise fully in memory, then write atomically."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(buffer.getvalue(), filepath)
