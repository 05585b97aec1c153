"""A tiny, deterministic mmengine training set-up shared by the checkpoint
tests, served as fixtures (``toy_runner``, ``tiny_arch``). (Resuming in a
new process equals the straight run: tests/engine/hooks/
test_fault_injection.py, which kills and resumes the real recipe.)"""
import copy
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmslak  # noqa: F401  (safe-loading allow-list, atomic writes)
from mmslak.models import SLaK

_RUNNERS = itertools.count()

TINY_ARCH = dict(depths=[1, 1], dims=[8, 16], kernel_sizes=[7, 5])


class ToyDataset(Dataset):
    """16 random 3x32x32 images with 3 classes, fixed by a seed."""

    def __init__(self, num: int = 16, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(num, 3, 32, 32, generator=gen)
        self.targets = torch.randint(0, 3, (num, ), generator=gen)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=self.inputs[idx], targets=self.targets[idx])


class ToyClassifier(BaseModel):
    """A 2-stage SLaK backbone with a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = SLaK(arch=TINY_ARCH, width_factor=1.0)
        self.head = nn.Linear(16, 3)

    def forward(self, inputs, targets=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[-1])
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, targets))
        return logits


def build_runner(work_dir: str,
                 by_epoch: bool,
                 length: int,
                 interval: int,
                 resume_from: str = None):
    """A Runner training ``length`` iterations (or epochs with ``by_epoch``)
    with AdamW, warm-up + cosine lr and EMA."""
    from mmengine.runner import Runner
    if by_epoch:
        train_cfg = dict(by_epoch=True, max_epochs=length, val_interval=100)
        total_iters = length * 4
    else:
        train_cfg = dict(by_epoch=False, max_iters=length, val_interval=1000)
        total_iters = length
    custom_hooks = [
        dict(type='EMAHook', momentum=0.1, priority='ABOVE_NORMAL')
    ]
    return Runner(
        model=ToyClassifier(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
            batch_size=4,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        train_cfg=train_cfg,
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)),
        param_scheduler=[
            dict(
                type='LinearLR',
                start_factor=0.1,
                by_epoch=False,
                begin=0,
                end=3),
            dict(
                type='CosineAnnealingLR',
                T_max=total_iters,
                by_epoch=False,
                begin=3,
                end=total_iters * 2),
        ],
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=interval, by_epoch=by_epoch),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=custom_hooks,
        randomness=dict(seed=0, deterministic=True),
        resume=resume_from is not None,
        load_from=resume_from,
        log_level='WARNING',
        # unique: Runners made in the same second otherwise share a
        # timestamped name, hence one MessageHub and its logged scalars
        experiment_name=f'toy_{next(_RUNNERS)}',
        default_scope='mmengine')


@pytest.fixture(scope='session')
def toy_runner():
    """:func:`build_runner`."""
    return build_runner


@pytest.fixture
def tiny_arch():
    """The 2-stage SLaK arch of the toy classifier (a fresh copy)."""
    return copy.deepcopy(TINY_ARCH)
