"""Child-process entry of the sparse tests:

    python tiny_child.py snip_syncbn OUT_DIR      (2 ranks, gloo, on CPU)

saves each rank's SNIP masks to ``OUT_DIR/<rank>.pth``.
"""
import datetime
import os.path as osp
import socket
import sys

import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class GatheringSyncBN(nn.SyncBatchNorm):
    """SyncBN as far as a collective goes: its training forward
    all-gathers the batch means of every rank (as SyncBN's statistics do),
    then normalises with the local statistics (CPU-friendly)."""

    def forward(self, x):
        if self.training and torch.distributed.is_initialized():
            mean = x.mean(0).detach()
            gathered = [
                torch.empty_like(mean)
                for _ in range(torch.distributed.get_world_size())
            ]
            torch.distributed.all_gather(gathered, mean)
        return F.batch_norm(x, None, None, self.weight, self.bias, True)


def _snip_syncbn_worker(rank, world_size, port, out_dir):
    from mmslak.sparse import DynamicSparsity
    torch.set_num_threads(1)
    # a hang becomes an error after 30 s instead of the 30-minute default
    torch.distributed.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=30))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8), GatheringSyncBN(8), nn.ReLU(), nn.Linear(8, 3))
    inputs, labels = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    model(inputs)  # the model's own forward gathers on every rank: fine
    sparsity = DynamicSparsity(model, density=0.5, init='snip', seed=rank)
    sparsity.init_masks(
        batches=[(inputs, labels)],
        loss_fn=lambda net, b: F.cross_entropy(net(b[0]), b[1]))
    assert isinstance(model[1], GatheringSyncBN)  # the model keeps it
    torch.save(
        sparsity.masks.bool_masks('cpu'), osp.join(out_dir, f'{rank}.pth'))
    torch.distributed.destroy_process_group()


def snip_syncbn(out_dir):
    """SNIP (rank 0 only) on a model that keeps a SyncBN-like module."""
    mp.spawn(
        _snip_syncbn_worker,
        args=(2, _free_port(), out_dir),
        nprocs=2,
        join=True)


if __name__ == '__main__':
    dict(snip_syncbn=snip_syncbn)[sys.argv[1]](*sys.argv[2:])
