"""Cost of sparse training relative to a SLaK training iteration.

Measures, in one run and on the same device:
  * one training iteration of a SLaK classifier (forward, backward, AdamW
    step), batch ``--batch`` at ``--size`` px;
  * applying the masks (what the hook does after every optimizer step);
  * one prune/regrow update of ``DynamicSparsity`` at prune rate
    ``--prune-rate`` (the largest ``p_t`` of the schedule);
and prints the two ratios (targets: < 3 % and < 1 iteration).

    python tests/benchmarks/bench_sparse.py [--arch tiny] [--batch 2]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmslak.models.backbones.slak import SLaK
from mmslak.sparse import DynamicSparsity


class Classifier(nn.Module):

    def __init__(self, arch):
        super().__init__()
        self.backbone = SLaK(arch=arch, drop_path_rate=0.1)
        self.head = nn.Linear(self.backbone.channels[-1], 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


def timed(fn, repeats, device):
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--density', type=float, default=0.6)
    parser.add_argument('--prune-rate', type=float, default=0.5)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = Classifier(args.arch).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.05)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch, ), device=device)

    sparsity = DynamicSparsity(
        model,
        density=args.density,
        init='uniform',
        update_interval=1,
        prune_rate=args.prune_rate)
    sparsity.init_masks()
    masks = sparsity.masks

    def iteration():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    iteration()  # warm-up (allocations, AdamW state)
    masks.apply()
    F.cross_entropy(model(x), y).backward()  # grads for a bare step
    t_step = timed(opt.step, 3, device)
    opt.zero_grad()
    masks.apply()

    # rounds of (iteration, mask application, update): each ratio is taken
    # within a round, so that load from other processes hits both alike
    rows = []
    for _ in range(args.rounds):
        t_iter = timed(iteration, 1, device)
        t_apply = timed(masks.apply, 3, device)
        t_update = timed(lambda: sparsity.update(args.prune_rate), 1, device)
        rows.append((t_iter, t_apply, t_update))
    med = statistics.median

    n_masked = sum(p.numel() for p in masks.params.values())
    print(f'device {device}, torch threads {torch.get_num_threads()}, '
          f'SLaK-{args.arch} batch {args.batch}x{args.size}, '
          f'{n_masked / 1e6:.1f}M masked weights in {len(masks)} layers, '
          f'{args.rounds} rounds')
    for i, (t_iter, t_apply, t_update) in enumerate(rows):
        print(f'round {i}: iteration {t_iter * 1e3:.0f} ms, mask application '
              f'{t_apply * 1e3:.1f} ms, update {t_update * 1e3:.0f} ms')
    print(f'AdamW step alone: {t_step * 1e3:.1f} ms; mask application = '
          f'{100 * med(r[1] for r in rows) / t_step:.0f} % of it')
    print('mask application / iteration: '
          f'{100 * med(r[1] / r[0] for r in rows):.2f} % (target < 3 %)')
    print(f'prune/regrow update (p={args.prune_rate}) / iteration: '
          f'{med(r[2] / r[0] for r in rows):.3f} (target < 1)')


if __name__ == '__main__':
    main()
