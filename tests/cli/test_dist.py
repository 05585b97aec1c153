"""mmslak.cli.dist: a one-rank gloo run in this process (the 2-rank runs
through dist_train.sh / dist_test.sh are in tests/integration)."""
import socket

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mmslak.cli.dist import close_distributed, setup_cpu_distributed


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


# with CUDA the set-up is mmengine's own (setup_cpu_distributed returns False)
cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason='tests the CPU (gloo) path')


def _cfg(launcher):
    return Config(
        dict(
            launcher=launcher,
            sync_bn='torch',
            model=dict(
                backbone=dict(norm_cfg=dict(type='SyncBN')),
                head=dict(norm_cfg=dict(type='BN')))))


def test_nothing_to_do_without_a_launcher():
    cfg = _cfg('none')
    assert setup_cpu_distributed(cfg) is False
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    close_distributed()  # no group: nothing to destroy
    assert not dist.is_initialized()


@cpu_only
def test_other_launchers_and_a_missing_environment_are_refused(monkeypatch):
    with pytest.raises(RuntimeError, match='--launcher slurm needs CUDA'):
        setup_cpu_distributed(_cfg('slurm'))
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv('RANK', '0')
    with pytest.raises(RuntimeError) as info:
        setup_cpu_distributed(_cfg('pytorch'))
    assert all(
        k in str(info.value)
        for k in ('WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'))
    assert "'RANK'" not in str(info.value)


@cpu_only
def test_one_rank_gloo_run_is_set_up_and_closed(monkeypatch):
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', _free_port())
    cfg = _cfg('pytorch')
    try:
        assert setup_cpu_distributed(cfg) is True
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert dist.get_world_size() == 1
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == 'CPUDistributedDataParallel'
        assert cfg.model_wrapper_cfg.broadcast_buffers is False
        assert 'sync_bn' not in cfg
        assert cfg.model.backbone.norm_cfg.type == 'BN'
    finally:
        close_distributed()
    assert not dist.is_initialized()
