"""A plain mmengine Runner (no mmslak) on a toy regression, for the tests
that check mmslak leaves mmengine alone. Run as a script to train and
checkpoint WITHOUT importing mmslak:

    python plain_mmengine_runner.py WORK_DIR ITERS
"""
import json
import sys

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.utils.data import Dataset


class ToyDataset(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.tensor([float(i), 1.0])
        return dict(inputs=x, labels=x.sum(0, keepdim=True) * 0.5)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.lin(inputs)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


def build_runner(work_dir,
                 iters,
                 checkpoint=None,
                 model=None,
                 dataset=None,
                 **kwargs):
    """An iteration-based Runner (batch 2 in order, SGD, checkpoint every 2
    iterations unless ``checkpoint``) on ``model`` / ``dataset`` (the toy
    regression by default); ``kwargs`` go to the Runner."""
    from mmengine.runner import Runner
    torch.manual_seed(0)
    return Runner(
        model=model or ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dataset or ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(
            type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(
            checkpoint=checkpoint
            or dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmengine',
        **kwargs)


if __name__ == '__main__':
    runner = build_runner(sys.argv[1], int(sys.argv[2]))
    runner.train()
    buffer = runner.message_hub.get_scalar('train/loss')
    print(
        json.dumps(
            dict(
                losses=buffer.data[0].tolist(),
                weight=runner.model.lin.weight.flatten().tolist(),
                mmslak_imported='mmslak' in sys.modules)))
