"""Child-process entry of the sparse tests, on the tiny set-up of
``conftest.py`` (beside this file):

    python tiny_child.py resume WORK_DIR CKPT OUT ITERS
    python tiny_child.py ddp WORK_DIR OUT_DIR     (2 ranks, gloo, on CPU)

Each saves ``final_state`` (``OUT``, or ``OUT_DIR/<rank>.pth``).
"""
import os
import os.path as osp
import socket
import sys

import torch
import torch.multiprocessing as mp

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from conftest import RESUME_HOOK, build_runner, final_state  # noqa: E402


def resume(work_dir, ckpt, out, max_iters):
    torch.use_deterministic_algorithms(True)
    runner = build_runner(
        work_dir,
        dict(RESUME_HOOK),
        max_iters=int(max_iters),
        resume=True,
        load_from=ckpt,
        name='resumed')
    runner.train()
    torch.save(final_state(runner), out)


def _ddp_worker(rank, world_size, port, work_dir, out_dir):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        'gloo', rank=rank, world_size=world_size)
    # a different seed per rank: only the broadcast can make masks agree
    hook = dict(
        type='SparseTrainingHook',
        density=0.5,
        init='snip',
        update_interval=2,
        prune_rate=0.5,
        seed=100 + rank)
    runner = build_runner(
        work_dir, hook, max_iters=8, launcher='pytorch', name='ddp')
    runner.train()
    torch.save(final_state(runner), osp.join(out_dir, f'{rank}.pth'))
    torch.distributed.destroy_process_group()


def ddp(work_dir, out_dir):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(
        _ddp_worker, args=(2, port, work_dir, out_dir), nprocs=2, join=True)


if __name__ == '__main__':
    dict(resume=resume, ddp=ddp)[sys.argv[1]](*sys.argv[2:])
