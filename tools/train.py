"""Train a SLaK model (classification, segmentation or detection) from an
OpenMMLab config, as mmpretrain's / mmseg's / mmdet's tools/train.py.

    python tools/train.py configs/upernet_slak_ade20k.py --work-dir WORK
"""
import argparse

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmslak  # noqa: F401  (registers SLaK and mmslak's pieces)
from mmslak.apis import load_config, task_family
from mmslak.cli.cfg_options import CfgOptionsAction
from mmslak.cli.dist import close_distributed, setup_cpu_distributed
from mmslak.cli.errors import exit_on_error
from mmslak.cli.train_test import (add_partial_load_flag,
                                   check_checkpoint_match,
                                   check_local_checkpoint, enable_amp,
                                   parse_with_launcher,
                                   seed_from_resumed_checkpoint, set_work_dir)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work_dir when no path is given')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual total batch size '
        '(config auto_scale_lr.base_batch_size)')
    add_partial_load_flag(parser)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, key=value (e.g. '
        'train_cfg.max_iters=100 model.backbone.init_cfg=None)')
    return parse_with_launcher(parser)


def build_train_cfg(args) -> Config:
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    task_family(cfg)  # fails early on a config of unknown kind
    set_work_dir(cfg, args.work_dir, args.config)
    check_checkpoint_match(
        cfg, strict=False, allow_partial=args.allow_partial_load)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs auto_scale_lr='
                             'dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    seed_from_resumed_checkpoint(cfg)
    check_local_checkpoint(cfg.get('load_from'))
    # SyncBN on a non-distributed run: mmengine's Runner.wrap_model reverts
    # it to BN itself (launcher 'none'), so nothing to do here.
    setup_cpu_distributed(cfg)  # gloo + BN when there is no CUDA
    return cfg


def main():
    args = parse_args()
    with exit_on_error(args.config):
        cfg = build_train_cfg(args)
        runner = (
            Runner.from_cfg(cfg)
            if 'runner_type' not in cfg else RUNNERS.build(cfg))
        runner.train()
    close_distributed()


if __name__ == '__main__':
    main()
