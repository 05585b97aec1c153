"""The README's main job: build SLaK-T through the registry and run it.

Prints per-stage output shapes and dense / non-zero parameter counts.
"""
import argparse
import time

import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import mmslak  # noqa: F401  (registers SLaK)


def backbone_summary(arch: str, size: int) -> None:
    init_default_scope('mmpretrain')
    model = MODELS.build(
        dict(
            type='mmpretrain.SLaK',
            arch=arch,
            out_indices=(0, 1, 2, 3),
            gap_before_final_norm=False)).eval()
    dense = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
    x = torch.randn(1, 3, size, size)
    start = time.perf_counter()
    with torch.no_grad():
        outs = model(x)
    elapsed = time.perf_counter() - start
    print(f'SLaK-{arch} on a 1x3x{size}x{size} input ({elapsed:.2f} s, CPU)')
    for i, out in enumerate(outs):
        print(f'  stage {i + 1}: {tuple(out.shape)}  kernel '
              f'{model.kernel_sizes[i]}')
    print(f'  parameters: {dense:,} dense, {nonzero:,} non-zero')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=224)
    args = parser.parse_args()
    backbone_summary(args.arch, args.size)


if __name__ == '__main__':
    main()
