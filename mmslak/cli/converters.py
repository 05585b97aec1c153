"""Command-line front ends of the converters (``tools/model_converters``).

Each ``main`` returns 0 on success; on any error it prints the reason to
stderr and returns 1 without writing DST (writes are atomic and happen only
after the converted state dict matched the target model).
"""
import argparse
import os.path as osp
import sys
from typing import Callable, List, Optional, Sequence

import torch.nn as nn
from mmpretrain.registry import MODELS

from ..apis import init_model
from ..checkpoint.converters import (REFERENCE_TRAINING_GLOBALS,
                                     mmdet2x_to_mmdet3x, mmpretrain_to_slak,
                                     mmseg0x_to_mmseg1x, save_converted,
                                     slak_to_mmpretrain)
from ..checkpoint.loading import (CheckpointError, check_state_dict,
                                  read_checkpoint)
from .progress import add_quiet_flag, progress_bar

# The steps a conversion's progress bar counts (large checkpoints take a
# while to read, to check against the model built for them and to write).
STEPS = ('read', 'convert', 'build the target model', 'check', 'write')

# The configs installed with the package (mmslak/.mim/configs).
DEFAULT_SEG_CONFIG = \
    'mmslak::upernet/upernet_slak-tiny_8xb2-160k_ade20k-512x512.py'
DEFAULT_DET_CONFIG = ('mmslak::cascade_mask_rcnn/'
                      'cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-'
                      '3x_coco.py')


def _target_model(config: str):
    """The model of ``config`` (weights not loaded); a clear error when an
    installed ``mmslak::`` config is asked for but mmslak is not
    installed (e.g. a source checkout: pass --config configs/...)."""
    try:
        return init_model(config)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f'target config {config!r} not found ({e}); the mmslak:: '
            'configs come with `pip install .`; in a source checkout pass '
            '--config configs/...') from None


def build_slak_classifier(arch: str = 'tiny',
                          kernel_sizes: Optional[Sequence[int]] = None,
                          width_factor: float = 1.3,
                          num_classes: Optional[int] = 1000) -> nn.Module:
    """An mmpretrain ImageClassifier with a SLaK backbone (the target of
    :func:`slak_to_mmpretrain`); ``num_classes=None`` builds the backbone
    only, wrapped so its keys are ``backbone.*``."""
    backbone = MODELS.build(
        dict(
            type='SLaK',
            arch=arch,
            kernel_sizes=kernel_sizes,
            width_factor=width_factor,
            init_cfg=None))
    if num_classes is None:
        wrapper = nn.Module()
        wrapper.backbone = backbone
        return wrapper
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,  # built once: the head needs its width
            neck=None,
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=backbone.channels[-1])))


def already_converted(checkpoint: dict, target: str) -> Optional[str]:
    """Why ``checkpoint`` is already in the ``target`` layout
    (``'mmpretrain'``, ``'reference'`` or ``'mmengine'``: mmseg 1.x /
    mmdet 3.x), else None."""
    if not isinstance(checkpoint, dict):
        return None
    state = checkpoint.get('state_dict')
    meta = checkpoint.get('meta') or {}
    if target == 'mmpretrain' and 'model' not in checkpoint and isinstance(
            state, dict) and any(k.startswith('backbone.') for k in state) \
            and 'ema_state_dict' not in checkpoint:
        # with an EMAHook state there is a choice to make (trained or EMA
        # weights), so one of our own checkpoints is converted then
        return "its 'state_dict' already has mmpretrain's backbone.* keys"
    if target == 'reference' and 'state_dict' not in checkpoint and \
            isinstance(checkpoint.get('model'), dict) and not any(
                k.startswith('backbone.') for k in checkpoint['model']):
        return "it already has the reference layout {'model': ...}"
    if target == 'mmengine' and isinstance(meta, dict) and (
            'mmengine_version' in meta or 'dataset_meta' in meta) and \
            'CLASSES' not in meta:
        return ('its meta is already mmengine\'s (mmengine_version / '
                'dataset_meta, no CLASSES)')
    return None


def _read_source(src: str, target: Optional[str], **kwargs) -> dict:
    """The source checkpoint, refused when already in the ``target``
    layout (None: not checked)."""
    ckpt = read_checkpoint(src, **kwargs)
    why = target and already_converted(ckpt, target)
    if why:
        raise ValueError(f'{src!r} is already in the target layout ({why}): '
                         'nothing to convert')
    return ckpt


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('src', help='source checkpoint')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument(
        '--verbose', action='store_true', help='print every key mapping')
    add_quiet_flag(parser)


def _add_arch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--config',
        help='mmpretrain config whose model is the target (instead of '
        '--arch/--kernel-sizes)')
    parser.add_argument(
        '--arch', default='tiny', help='SLaK arch of the target model')
    parser.add_argument(
        '--kernel-sizes',
        type=int,
        nargs='+',
        default=None,
        help='stage kernel sizes of the target model (default 51 49 47 13)')
    parser.add_argument(
        '--width-factor',
        type=float,
        default=1.3,
        help='width factor of the target model')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=None,
        help='classes of the target head (default: from the checkpoint)')


def _run(convert: Callable[..., int], quiet: bool) -> int:
    """``convert(bar)`` with a progress bar over :data:`STEPS`; an error
    ends the bar's line, then prints the reason."""
    bar = progress_bar(len(STEPS), quiet)
    try:
        return convert(bar)
    except (CheckpointError, OSError, ValueError, KeyError) as e:
        bar.finish()
        print(f'error: {e}', file=sys.stderr)
        print('nothing was written', file=sys.stderr)
        return 1


def _check_and_write(converted: dict, dst: str, report, verbose: bool, bar,
                     check: Callable[[], None]) -> None:
    """The last steps, once the target model is built: ``check()`` the
    converted state dict, write it; then end the bar's line and print the
    mapping summary (also when the check fails: it helps read the error)."""
    bar.update()
    try:
        check()
        bar.update()
        save_converted(converted, dst)
        bar.update()
    finally:
        bar.finish()
        print(report.summary(verbose))


def _finish(converted: dict,
            report,
            target,
            dst: str,
            verbose: bool,
            src: str,
            bar,
            subset: Optional[str] = None) -> int:
    state_dict = converted.get('state_dict', converted.get('model'))
    if subset is not None:
        wrapper = nn.Module()
        for name, child in target.named_children():
            if name == subset:
                setattr(wrapper, name, child)
        target = wrapper
    _check_and_write(
        converted, dst, report, verbose, bar, lambda: check_state_dict(
            state_dict,
            target.state_dict(),
            source=f'the converted checkpoint of {src!r}',
            target=f'the target {type(target).__name__}'))
    print(f'checked against the target model ({len(state_dict)} tensors); '
          f'wrote {dst}')
    return 0


def _classifier_from_args(args, state_dict: dict, head_key: str):
    """The SLaK classifier described by --arch/--kernel-sizes/--width-factor;
    its class count is --num-classes, else the checkpoint's ``head_key``
    rows, else 1000 (no head with --backbone-only)."""
    num_classes = args.num_classes
    if num_classes is None and head_key in state_dict:
        num_classes = state_dict[head_key].shape[0]
    return build_slak_classifier(
        args.arch,
        args.kernel_sizes,
        args.width_factor,
        num_classes=None if args.backbone_only else num_classes or 1000)


def slak2mmpretrain_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Reference SLaK ImageNet checkpoint -> mmpretrain '
        'ImageClassifier (backbone.*, head.fc.*)')
    _add_common(parser)
    _add_arch(parser)
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='drop the head; for init_cfg=dict(type="Pretrained", '
        'prefix="backbone.") in mmseg/mmdet configs')
    parser.add_argument(
        '--ema',
        action='store_true',
        help="take the EMA weights (a reference checkpoint's 'model_ema'; "
        "of our own checkpoints the EMAHook average); default: the trained "
        'weights')
    args = parser.parse_args(argv)

    def convert(bar) -> int:
        ckpt = _read_source(
            args.src,
            # extracting the backbone is never a no-op
            None if args.backbone_only else 'mmpretrain',
            extra_safe_globals=REFERENCE_TRAINING_GLOBALS)
        bar.update()
        converted, report = slak_to_mmpretrain(
            ckpt, ema=args.ema, backbone_only=args.backbone_only)
        bar.update()
        state_dict = converted['state_dict']
        if args.config:
            target = _target_model(args.config)
        else:
            target = _classifier_from_args(args, state_dict, 'head.fc.weight')
        return _finish(
            converted,
            report,
            target,
            args.dst,
            args.verbose,
            args.src,
            bar,
            subset='backbone' if args.backbone_only else None)

    return _run(convert, args.quiet)


def mmslak2slak_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='mmslak (mmpretrain) checkpoint -> reference SLaK '
        "layout {'model': state_dict}")
    _add_common(parser)
    _add_arch(parser)
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='keep only backbone.* (drop head, neck, decode heads)')
    args = parser.parse_args(argv)

    def convert(bar) -> int:
        ckpt = _read_source(args.src, 'reference')
        bar.update()
        converted, report = mmpretrain_to_slak(
            ckpt, backbone_only=args.backbone_only)
        bar.update()
        state_dict = converted['model']
        if args.config:
            model = _target_model(args.config)
        else:
            model = _classifier_from_args(args, state_dict, 'head.weight')
        # the reference layout is our classifier's keys without the
        # 'backbone.'/'head.fc.' wrapping
        reference, _ = mmpretrain_to_slak(
            dict(state_dict=model.state_dict()),
            backbone_only=args.backbone_only)
        _check_and_write(
            converted, args.dst, report, args.verbose, bar,
            lambda: check_state_dict(
                state_dict,
                reference['model'],
                source=f'the converted checkpoint of {args.src!r}',
                target='the reference SLaK layout of the target model'))
        print(f'checked against the target model ({len(state_dict)} '
              f'tensors); wrote {args.dst}')
        return 0

    return _run(convert, args.quiet)


def _downstream_main(argv, description: str, converter, default_config: str,
                     kind: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    _add_common(parser)
    parser.add_argument(
        '--config',
        default=default_config,
        help=f'{kind} config of the target model (default: '
        f'{default_config}, installed with mmslak)')
    args = parser.parse_args(argv)

    def convert(bar) -> int:
        if '::' not in args.config and not osp.isfile(args.config):
            raise FileNotFoundError(
                f'target config {args.config!r} not found; pass --config')
        ckpt = _read_source(args.src, 'mmengine')
        bar.update()
        converted, report = converter(ckpt)
        bar.update()
        target = _target_model(args.config)
        return _finish(converted, report, target, args.dst, args.verbose,
                       args.src, bar)

    return _run(convert, args.quiet)


def slak_seg2mmseg_main(argv: Optional[List[str]] = None) -> int:
    return _downstream_main(
        argv, 'SLaK UperNet checkpoint of mmseg 0.x -> mmseg 1.x',
        mmseg0x_to_mmseg1x, DEFAULT_SEG_CONFIG, 'mmseg')


def slak_det2mmdet_main(argv: Optional[List[str]] = None) -> int:
    return _downstream_main(
        argv, 'SLaK Cascade Mask R-CNN checkpoint of mmdet 2.x -> mmdet 3.x',
        mmdet2x_to_mmdet3x, DEFAULT_DET_CONFIG, 'mmdet')
