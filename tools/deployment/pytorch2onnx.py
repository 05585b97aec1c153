"""Export a SLaK model to ONNX in deploy form and check it with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT OUT.onnx \
        [--shape H W] [--dynamic] [--image IMG]

Classifiers export their logits, segmentors the whole-image logits at the
input size, detectors their backbone + neck (FPN maps). The graph takes the
normalised image batch (see ``mmslak/apis/export.py``). Unless
``--no-verify``, the file is run by onnxruntime on a random input (and on
``--image``, default: scikit-image's astronaut) and the max relative error
against PyTorch is printed; the tool fails above ``--tolerance``.
"""
import argparse
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.model import revert_sync_batchnorm

from mmslak.apis.export import (export_graph, export_onnx, onnx_errors,
                                onnx_session, preprocess_image)
from mmslak.apis.inferencers import init_inference_model
from mmslak.cli.errors import run_main
from mmslak.models import switch_to_deploy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help='checkpoint (training or deploy form), or "none"')
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(224, 224),
        metavar=('H', 'W'),
        help='input height and width (default 224 224)')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='symbolic batch, height and width')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument(
        '--image', help='image for the check (default: skimage astronaut)')
    parser.add_argument('--no-verify', action='store_true')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if min(args.shape) < 32:
        parser.error(f'--shape must be at least 32x32, got {args.shape}')
    return args


def load_image(path):
    if path is None:
        from skimage import data
        return data.astronaut()
    from PIL import Image
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    return np.asarray(Image.open(path).convert('RGB'))


def verify(model, graph, out, args) -> float:
    session = onnx_session(out)
    inputs = dict(
        random=torch.randn(1, 3, *args.shape),
        image=preprocess_image(model, load_image(args.image), args.shape))
    worst = 0.
    for what, x in inputs.items():
        errors = onnx_errors(graph, session, x)
        for name, (abs_err, err) in errors.items():
            print(f'onnxruntime vs PyTorch, {what} input, {name}: max abs '
                  f'error {abs_err:.3g}, max relative error {err:.3g}')
            worst = max(worst, err)
    return worst


def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoint = None if args.checkpoint == 'none' else args.checkpoint
    folder = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(folder):  # checked before the minutes of export
        raise FileNotFoundError(
            f'the folder {folder!r} of the output {args.out!r} does not '
            'exist')
    model = revert_sync_batchnorm(
        init_inference_model(args.config, checkpoint, 'cpu', args.cfg_options))
    switched = switch_to_deploy(model)
    print(f'{switched} module(s) switched to deploy form (0: built in it)')
    graph = export_graph(model)
    x = torch.randn(1, 3, *args.shape)
    names = export_onnx(graph, x, args.out, args.dynamic, args.opset)
    print(f'wrote {osp.abspath(args.out)} (outputs: {", ".join(names)})')
    if args.no_verify:
        return 0
    worst = verify(model, graph, args.out, args)
    if worst > args.tolerance:
        print(
            f'error: max relative error {worst:.3g} above {args.tolerance}',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
