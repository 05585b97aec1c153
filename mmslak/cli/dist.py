"""Distributed runs of tools/train.py and tools/test.py on CPU-only
machines (``--launcher pytorch``, e.g. ``dist_train.sh CONFIG 2``).

mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and builds a NCCL
DDP with ``device_ids``; without CUDA we initialise a gloo process group
first (the Runner then keeps it), wrap the model with
``CPUDistributedDataParallel`` and turn SyncBN (CUDA only in torch) back
into BN.
"""
import os
from typing import Union

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log

from ..utils import edit_dicts


def syncbn_to_bn(cfg: Union[dict, list]) -> int:
    """Replace ``type='SyncBN'`` norm configs by ``'BN'`` in place; returns
    how many were replaced."""

    def to_bn(node: dict) -> int:
        if node.get('type') not in ('SyncBN', 'MMSyncBN', 'TorchSyncBN'):
            return 0
        node['type'] = 'BN'
        return 1

    return edit_dicts(cfg, to_bn)


def setup_cpu_distributed(cfg: Config) -> bool:
    """Prepare ``cfg`` (and the process group) for a distributed run without
    CUDA; returns True if it did, False when there is nothing to do (not
    distributed, or CUDA available: mmengine's own path)."""
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} needs CUDA (mmengine initialises it with '
            'torch.cuda.set_device); on CPU-only machines use torchrun / '
            'tools/dist_train.sh (--launcher pytorch, gloo backend)')
    missing = [
        k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        if k not in os.environ
    ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs {missing} in the '
                           'environment: start with torchrun or '
                           'tools/dist_train.sh / tools/dist_test.sh')
    if not dist.is_initialized():
        # torchrun's agent keeps one store across the restarts of a group
        # (MAX_RESTARTS): a restarted rank could read the killed group's
        # gloo addresses there ('Gloo connectFullMesh failed'). Each start
        # meets under its own prefix.
        store, rank, world_size = next(
            dist.rendezvous('env://', timeout=dist.default_pg_timeout))
        attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
        dist.init_process_group(
            backend='gloo',
            store=dist.PrefixStore(f'mmslak/start_{attempt}', store),
            rank=rank,
            world_size=world_size)
    # creates env_cfg / dist_cfg where the config has none
    cfg.merge_from_dict({'env_cfg.dist_cfg.backend': 'gloo'})
    if 'model_wrapper_cfg' not in cfg:
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.pop('sync_bn', None)
    replaced = syncbn_to_bn(cfg.model)
    print_log(
        f'distributed on CPU: gloo process group, rank {dist.get_rank()} of '
        f'{dist.get_world_size()}; SyncBN needs CUDA: {replaced} SyncBN '
        'config(s) fall back to BN (statistics per process)',
        logger='current')
    return True


def close_distributed() -> None:
    """End a run's process group: wait for every rank (no rank tears its
    connections down while another still uses them), then destroy it.
    mmengine's Runner leaves the group to the interpreter's exit, where a
    gloo rank could abort ('terminate called without an active exception')
    after its results were written: a failed exit status for a finished
    run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
