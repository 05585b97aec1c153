"""Effective receptive field of one or more backbones (the SLaK paper's ERF).

Examples::

    # SLaK-T vs ConvNeXt-T at random init, small and fast enough for a CPU
    python tools/analysis/erf.py slak-tiny convnext-tiny --size 256 \
        --num-images 4 --out-dir work_dirs/erf
    # the paper's setting with trained weights and ImageNet val images
    python tools/analysis/erf.py configs/slak/slak-tiny_4xb128-accum8_in1k.py \
        --checkpoints slak_tiny.pth --images data/imagenet/val \
        --num-images 50 --size 1024
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
import time

import numpy as np
import torch
from mmengine.logging import MMLogger

from mmslak.analysis import (DEFAULT_THRESHOLDS, compute_erf,
                             high_contribution_area_ratios, load_images,
                             normalize_erf, plot_erfs, preprocess)
from mmslak.apis import BACKBONE_ALIASES, build_erf_backbone
from mmslak.cli.cfg_options import CfgOptionsAction
from mmslak.cli.errors import run_main
from mmslak.cli.progress import add_quiet_flag, progress_bar


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Effective receptive field (ERF) of backbones: gradient '
        'of the centre pixel of the last stage w.r.t. the input, aggregated '
        'over images, log10(x+1), normalised; high-contribution area ratios.')
    parser.add_argument(
        'models',
        nargs='+',
        help='config files (model.backbone is used) or names: ' +
        ', '.join(BACKBONE_ALIASES))
    parser.add_argument(
        '--checkpoints',
        nargs='+',
        default=None,
        help='one checkpoint per model, "none" for random init')
    parser.add_argument(
        '--names', nargs='+', default=None, help='labels in the figure')
    parser.add_argument(
        '--images',
        default=None,
        help='folder of images (e.g. ImageNet val); default: photos '
        "bundled with scikit-image, augmented by crops/flips")
    parser.add_argument('--num-images', type=int, default=50)
    parser.add_argument(
        '--size', type=int, default=1024, help='input side (paper: 1024)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--layer-scale',
        type=float,
        default=1.0,
        help='layer_scale_init_value for randomly initialised models; the '
        'default 1e-6 of SLaK/ConvNeXt would mute every block (use a '
        'negative value to keep the config\'s)')
    parser.add_argument(
        '--init',
        choices=['config', 'pytorch'],
        default='config',
        help='random initialisation: the model\'s init_weights() (config) '
        'or PyTorch\'s fan-in scaled defaults (pytorch)')
    parser.add_argument(
        '--grad',
        choices=['abs', 'relu'],
        default='abs',
        help="abs: the paper's |grad|; relu: the reference scripts' ReLU")
    parser.add_argument(
        '--thresholds',
        type=float,
        nargs='+',
        default=list(DEFAULT_THRESHOLDS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-dir', default='work_dirs/erf')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override settings of every config, xxx=yyy format')
    add_quiet_flag(parser)
    return _checked(parser, parser.parse_args(argv))


def _checked(parser: argparse.ArgumentParser,
             args: argparse.Namespace) -> argparse.Namespace:
    """Errors argparse cannot check by itself."""
    n = len(args.models)
    for opt in ('checkpoints', 'names'):
        value = getattr(args, opt)
        if value is not None and len(value) != n:
            parser.error(f'--{opt} needs one entry per model ({n}), got '
                         f'{len(value)}')
    for spec in args.models:
        if spec not in BACKBONE_ALIASES and not (osp.isfile(spec)
                                                 or '::' in spec):
            parser.error(f'{spec!r} is neither a config file nor one of '
                         f'{list(BACKBONE_ALIASES)}')
    if args.size < 32:
        parser.error(f'--size must be >= 32, got {args.size}')
    return args


def model_label(spec: str) -> str:
    base = osp.splitext(osp.basename(spec.split('::')[-1]))[0]
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', base)


def erf_with_progress(backbone, images, name: str, args) -> np.ndarray:
    """:func:`compute_erf` with a bar counting the images (a terminal
    only, not with ``--quiet``), then its time."""
    start = time.time()
    bar = progress_bar(images.shape[0], args.quiet)
    erf = compute_erf(
        backbone,
        images,
        batch_size=args.batch_size,
        grad_mode=args.grad,
        device=args.device,
        progress=lambda done, _: bar.update(done - bar.completed))
    bar.finish()
    print(f'{name}: {images.shape[0]} images ({time.time() - start:.1f}s)')
    return erf


def main(argv=None):
    args = parse_args(argv)
    # Quiet the per-parameter init logs of mmengine's init_weights.
    if not MMLogger.check_instance_created('mmslak-erf'):
        MMLogger.get_instance('mmslak-erf', log_level='WARNING')
    os.makedirs(args.out_dir, exist_ok=True)
    images = preprocess(load_images(args.images, args.num_images), args.size)
    print(f'{images.shape[0]} images at {args.size}x{args.size} from '
          f'{args.images or "scikit-image photos"}')
    checkpoints = args.checkpoints or [None] * len(args.models)
    names = args.names or [model_label(m) for m in args.models]
    layer_scale = args.layer_scale if args.layer_scale > 0 else None
    normalised, report = {}, {}
    for spec, ckpt, name in zip(args.models, checkpoints, names):
        ckpt = None if ckpt in (None, 'none', 'None') else ckpt
        torch.manual_seed(args.seed)
        backbone, _ = build_erf_backbone(
            spec,
            ckpt,
            layer_scale=layer_scale,
            cfg_options=args.cfg_options,
            random_init=args.init)
        erf = erf_with_progress(backbone, images, name, args)
        np.save(osp.join(args.out_dir, f'{name}.npy'), erf)
        normalised[name] = normalize_erf(erf)
        ratios = high_contribution_area_ratios(normalised[name],
                                               args.thresholds)
        report[name] = dict(
            model=spec,
            checkpoint=ckpt,
            init='checkpoint'
            if ckpt else f'random (layer_scale_init_value={layer_scale})',
            area_ratio={
                f'{t:g}': r
                for t, r in ratios.items()
            })
        print(f'{name}: ' + ', '.join(f't={t * 100:g}%: {r:.4f}'
                                      for t, r in ratios.items()))
    fig = osp.join(args.out_dir, 'erf.png')
    plot_erfs(normalised, fig, args.thresholds)
    meta = dict(
        num_images=int(images.shape[0]),
        size=args.size,
        images=args.images or 'scikit-image photos',
        grad=args.grad,
        models=report)
    with open(osp.join(args.out_dir, 'erf_ratios.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'wrote {fig}, erf_ratios.json and one .npy per model to '
          f'{args.out_dir}')
    return meta


if __name__ == '__main__':
    run_main(main)  # main returns the ERFs
    sys.exit(0)
