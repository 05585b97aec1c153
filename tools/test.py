"""Test (and evaluate) a SLaK model from an OpenMMLab config and a
checkpoint: mIoU for mmseg, mAP / COCO AP for mmdet, top-1 for mmpretrain.

    python tools/test.py CONFIG CHECKPOINT --show-dir vis
"""
import argparse
import os.path as osp

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
                                   check_local_checkpoint, dump_metric,
                                   enable_visualization, parse_with_launcher,
                                   set_work_dir)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='save painted predictions in this directory')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_partial_load_flag(parser)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, key=value')
    return parse_with_launcher(parser)


def build_test_cfg(args) -> Config:
    check_local_checkpoint(args.checkpoint)  # before the config's work
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    family = task_family(cfg)
    set_work_dir(cfg, args.work_dir, args.config)
    check_checkpoint_match(
        cfg, strict=True, allow_partial=args.allow_partial_load)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        show_dir = osp.abspath(args.show_dir) if args.show_dir else None
        enable_visualization(cfg, family, args.show, show_dir, args.wait_time)
    setup_cpu_distributed(cfg)  # gloo + BN when there is no CUDA
    return cfg


def main():
    args = parse_args()
    with exit_on_error(args.config):
        cfg = build_test_cfg(args)
        runner = (
            Runner.from_cfg(cfg)
            if 'runner_type' not in cfg else RUNNERS.build(cfg))
        if args.out is not None:
            runner.test_evaluator.metrics.append(
                dump_metric(task_family(cfg), args.out))
        runner.test()
    close_distributed()


if __name__ == '__main__':
    main()
