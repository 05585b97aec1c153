"""Parameters and FLOPs of a classification, segmentation or detection
config, dense and sparse (scaled by each conv/linear layer's density).

"FLOPs" are counted as multiply-accumulates (mmengine's FlopAnalyzer, the
unit of the SLaK, ConvNeXt and RepLKNet papers). Examples::

    python tools/analysis/get_flops.py \
        configs/slak/slak-tiny_4xb128-accum8_in1k.py
    python tools/analysis/get_flops.py \
        configs/slak/slak-tiny_4xb128-accum8_in1k.py --density 0.6
    python tools/analysis/get_flops.py configs/upernet_slak_ade20k.py \
        --shape 512 2048 --density 0.6
    python tools/analysis/get_flops.py CONFIG --checkpoint sparse.pth \
        --density-source masks
"""
import argparse
import json
import sys

from mmengine.logging import MMLogger

from mmslak.analysis import (TensorForward, count_complexity,
                             densities_assumed, densities_from_masks,
                             densities_from_weights, dummy_inputs)
from mmslak.analysis.complexity import format_count
from mmslak.apis import build_model, load_config, task_family
from mmslak.cli.cfg_options import CfgOptionsAction
from mmslak.cli.errors import run_main
from mmslak.sparse import masks_from_checkpoint

DEFAULT_SHAPES = {
    'mmpretrain': (224, 224),
    # mmseg's get_flops default, the size of the ADE20K papers' FLOPs
    'mmseg': (512, 2048),
    'mmdet': (1280, 800),
    'backbone': (224, 224),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Dense and non-zero parameters and FLOPs (MACs).')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=None,
        help='input H [W]; default 224 (classification), 512 2048 '
        '(segmentation), 1280 800 (detection)')
    parser.add_argument('--checkpoint', default=None, help='weights to load')
    parser.add_argument(
        '--density',
        type=float,
        default=None,
        help='assume this density for every sparse layer (paper: 0.6)')
    parser.add_argument(
        '--density-source',
        choices=['auto', 'uniform', 'masks', 'weights', 'none'],
        default='auto',
        help='uniform: --density for every conv/linear weight under '
        '--sparse-prefix; masks: the checkpoint\'s saved sparse-training '
        'masks; weights: the non-zero fraction of the loaded weights; '
        'none: dense only. auto: uniform if --density is given, else masks '
        'if the checkpoint has them, else weights if a checkpoint is '
        'given, else the density the config\'s SparseTrainingHook sets, '
        'else none')
    parser.add_argument(
        '--sparse-prefix',
        default=None,
        help='module-name prefix of the sparse layers for --density '
        '(default: all layers for classifiers, "backbone." otherwise, '
        'as in the paper)')
    parser.add_argument(
        '--keep-aux-head',
        action='store_true',
        help='count a segmentor\'s auxiliary head too (mmseg\'s get_flops '
        'and the papers drop it)')
    parser.add_argument('--layers', action='store_true', help='per layer')
    parser.add_argument('--json', default=None, help='write results here')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, xxx=yyy format')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape must be positive pixel sizes, got '
                     f'{" ".join(map(str, args.shape))}')
    if args.density is not None and not 0 < args.density <= 1:
        parser.error(f'--density must be in (0, 1], got {args.density}')
    if args.density_source == 'uniform' and args.density is None:
        parser.error('--density-source uniform needs --density')
    if args.density_source in ('masks', 'weights') and not args.checkpoint:
        parser.error(f'--density-source {args.density_source} needs '
                     '--checkpoint')
    return args


def config_density(cfg):
    """The density a config's SparseTrainingHook sets explicitly (None
    if it sets none, or keeps a checkpoint's zeros)."""
    for hook in cfg.get('custom_hooks') or []:
        if str(hook.get('type', '')).endswith('SparseTrainingHook') and \
                'density' in hook and hook.get('init') != 'checkpoint':
            return float(hook['density'])
    return None


def resolve_densities(args, model, task, hook_density=None):
    """(densities, description of where they come from)."""
    source = args.density_source
    masks = None
    density, origin = args.density, 'assumed'
    if source == 'auto':
        if args.density is not None:
            source = 'uniform'
        elif args.checkpoint:
            try:
                masks = masks_from_checkpoint(args.checkpoint, zeros=False)
                source = 'masks'
            except KeyError:  # no masks saved: count the zeros
                source = 'weights'
        elif hook_density is not None:
            source = 'uniform'
            density, origin = hook_density, "the config's SparseTrainingHook"
        else:
            source = 'none'
    if source == 'none':
        return {}, 'none (dense)'
    if source == 'uniform':
        prefix = args.sparse_prefix
        if prefix is None:
            prefix = '' if task == 'mmpretrain' else 'backbone.'
        where = f'"{prefix}*"' if prefix else 'all'
        return (densities_assumed(model, density, prefix),
                f'uniform {density} on {where} conv/linear weights '
                f'({origin})')
    if source == 'masks':
        masks = masks if masks is not None else masks_from_checkpoint(
            args.checkpoint, zeros=False)
        return (densities_from_masks(model, masks),
                f'sparse-training masks of {args.checkpoint}')
    return (densities_from_weights(model, args.sparse_prefix or ''),
            f'non-zero weights of {args.checkpoint}')


def main(argv=None):
    args = parse_args(argv)
    if not MMLogger.check_instance_created('mmslak-get-flops'):
        MMLogger.get_instance('mmslak-get-flops', log_level='WARNING')
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(
        cfg, args.checkpoint, drop_auxiliary_head=not args.keep_aux_head)
    task = task_family(model) or 'backbone'
    if args.shape is None:
        shape = DEFAULT_SHAPES[task]
    else:
        shape = (args.shape[0], args.shape[-1])
    densities, source = resolve_densities(args, model, task,
                                          config_density(cfg))
    inputs, kwargs = dummy_inputs(model, shape)
    with TensorForward(model, kwargs):
        result = count_complexity(model, inputs, densities)
    sparse = bool(densities)
    lines = [
        '=' * 60, f'config: {args.config}', f'task: {task}',
        f'input shape: 3x{shape[0]}x{shape[1]}', f'density source: {source}',
        f'params (dense): {format_count(result["params"])}'
        f' ({result["params"]:,})',
        f'FLOPs (dense, MACs): {format_count(result["flops"])}'
    ]
    if sparse:
        lines += [
            f'params (non-zero): {format_count(result["nonzero_params"])}'
            f' ({result["nonzero_params"]:,})',
            f'FLOPs (sparse, MACs): {format_count(result["sparse_flops"])}'
        ]
    lines.append('=' * 60)
    print('\n'.join(lines))
    if args.layers and sparse:
        for name, info in result['layers'].items():
            print(f'{name}: density {info["density"]:.3f}, '
                  f'params {info["params"]:,}, '
                  f'MACs {format_count(info["flops"])}')
    summary = dict(
        config=args.config,
        task=task,
        shape=list(shape),
        density_source=source,
        **{
            k: v
            for k, v in result.items() if k != 'layers'
        })
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == '__main__':
    run_main(main)  # main returns the counts
    sys.exit(0)
