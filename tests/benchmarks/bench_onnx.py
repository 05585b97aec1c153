"""onnxruntime vs eager PyTorch inference time of a deployed SLaK classifier
(default: SLaK-T, 1 x 3 x 224 x 224, CPU), timed round-robin in one run.

    python tests/benchmarks/bench_onnx.py [--config CFG] [--batch 1]
        [--size 224] [--repeats 5] [--threads N]

Eager PyTorch runs with mmslak's default dispatch (its fastest CPU plan);
onnxruntime runs the exported graph (plain Conv) on its CPU provider.
"""
import argparse
import os.path as osp
import tempfile

import torch

from mmslak.apis import init_model
from mmslak.apis.export import (export_graph, export_onnx, onnx_errors,
                                onnx_session, time_both)
from mmslak.models import switch_to_deploy

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--config',
        default=osp.join(REPO, 'configs', 'slak',
                         'slak-tiny_4xb128-accum8_in1k.py'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = init_model(args.config)
    switch_to_deploy(model)
    graph = export_graph(model)
    x = torch.randn(args.batch, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        export_onnx(graph, x, path)
        session = onnx_session(path)
        abs_err, err = map(max, zip(*onnx_errors(graph, session, x).values()))
        eager, ort = time_both(graph, session, x, args.repeats)
    print(f'{osp.basename(args.config)} deploy form, {args.batch}x3x'
          f'{args.size}x{args.size}, {torch.get_num_threads()} threads: '
          f'eager PyTorch {eager * 1e3:.1f} ms, onnxruntime {ort * 1e3:.1f} '
          f'ms, onnxruntime/PyTorch time ratio {ort / eager:.2f}; max '
          f'abs error {abs_err:.2e}, max relative error {err:.2e}')


if __name__ == '__main__':
    main()
