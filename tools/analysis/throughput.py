"""Inference throughput (images/s) of a config's model.

Times the plain tensor forward (no post-processing, no data loading) on
random inputs. Examples::

    python tools/analysis/throughput.py \
        configs/slak/slak-tiny_4xb128-accum8_in1k.py --batch-size 8 --shape 224
    # training form vs the reparameterised (deploy) form, in the same run
    python tools/analysis/throughput.py \
        configs/slak/slak-tiny_4xb128-accum8_in1k.py --deploy both \
        --device cuda --batch-size 64
"""
import argparse
import json
import sys

import torch
from mmengine.logging import MMLogger

from mmslak.analysis import (TensorForward, dummy_inputs, measure_throughput,
                             switch_to_deploy)
from mmslak.apis import build_model, load_config, task_family
from mmslak.cli.cfg_options import CfgOptionsAction
from mmslak.cli.errors import run_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Images per second of a model\'s tensor forward.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', default=None)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument(
        '--shape', type=int, nargs='+', default=[224], help='input H [W]')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--deploy',
        choices=['off', 'on', 'both'],
        default='off',
        help='time the reparameterised form (switch_to_deploy(), when the '
        'model has it); both: training form first, then deploy, same run')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='model and inputs in channels_last memory format')
    parser.add_argument(
        '--amp', action='store_true', help='autocast (bf16 on CPU)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--json', default=None)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, xxx=yyy format')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    return args


def time_model(model, args, shape):
    inputs, kwargs = dummy_inputs(
        model, shape, args.batch_size, device=args.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    device_type = torch.device(args.device).type
    amp = torch.autocast(device_type, enabled=args.amp)
    with TensorForward(model, kwargs), amp:
        return measure_throughput(model, inputs, args.warmup, args.iters,
                                  args.repeats)


def main(argv=None):
    args = parse_args(argv)
    if not MMLogger.check_instance_created('mmslak-throughput'):
        MMLogger.get_instance('mmslak-throughput', log_level='WARNING')
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg, args.checkpoint)
    model.to(args.device)
    shape = (args.shape[0], args.shape[-1])
    modes = {'off': [False], 'on': [True], 'both': [False, True]}
    results = {}
    for deploy in modes[args.deploy]:
        if deploy and switch_to_deploy(model) == 0:
            print('the model has no switch_to_deploy(): no deploy form to '
                  'time')
            break
        model.to(args.device)  # fused layers are created on the CPU
        result = time_model(model, args, shape)
        name = 'deploy' if deploy else 'train-form'
        results[name] = result
        print(f'{name}: {result["images_per_s"]:.2f} images/s '
              f'({result["ms_per_batch"]:.1f} ms per batch of '
              f'{args.batch_size}, median of {args.repeats})')
    if len(results) == 2:
        print(
            'deploy / train-form speed ratio: '
            f'{results["deploy"]["images_per_s"] / results["train-form"]["images_per_s"]:.2f}'  # noqa: E501
        )
    summary = dict(
        config=args.config,
        task=task_family(model),
        device=str(args.device),
        batch_size=args.batch_size,
        shape=list(shape),
        channels_last=args.channels_last,
        amp=args.amp,
        torch_threads=torch.get_num_threads(),
        results=results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == '__main__':
    run_main(main)  # main returns the timings
    sys.exit(0)
