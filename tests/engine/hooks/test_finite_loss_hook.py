"""FiniteLossHook: a NaN/inf loss stops before the weights change (naming
the iteration, the loss terms and the last good checkpoint), or skips the
step."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmslak  # noqa: F401
from mmslak.checkpoint import load_checkpoint_file
from mmslak.engine.hooks import FiniteLossHook, NonFiniteLossError


class _Data(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)))


class _Model(BaseModel):
    """Two loss terms; ``aux`` is NaN for the batch of samples 4 and 5
    (the 3rd iteration with batch 2, no shuffling)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.fc(inputs).mean()
        aux = out * 0 + (math.nan if inputs[0, 0] == 4 else 1.)
        return dict(loss_main=out**2, loss_aux=aux)


@pytest.fixture
def make_runner(plain_runner):
    """The shared tiny Runner on this file's model and data, 5 iterations,
    with FiniteLossHook(``action``) and atomic checkpoints every 2."""

    def make(work_dir, action):
        return plain_runner.build_runner(
            work_dir,
            5,
            checkpoint=dict(
                type='AtomicCheckpointHook', interval=2, by_epoch=False),
            model=_Model(),
            dataset=_Data(),
            custom_hooks=[dict(type='FiniteLossHook', action=action)],
            log_level='WARNING')

    return make


def test_nan_stops_with_iteration_terms_and_checkpoint(tmp_path, make_runner):
    runner = make_runner(tmp_path, 'stop')
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 3' in message
    assert 'loss_aux=nan' in message and 'loss_main=' in message
    assert str(tmp_path / 'iter_2.pth') in message
    # the weights were not touched by the NaN step
    assert torch.isfinite(runner.model.fc.weight).all()
    saved = load_checkpoint_file(str(tmp_path / 'iter_2.pth'))
    assert torch.equal(saved['state_dict']['fc.weight'],
                       runner.model.fc.weight.detach())


def test_nan_step_skipped(tmp_path, train_logged, make_runner):
    runner = make_runner(tmp_path, 'skip')
    text = train_logged(runner)
    assert 'skipped the step: loss nan at iteration 3' in text
    assert text.count('skipped the step') == 1
    assert torch.isfinite(runner.model.fc.weight).all()
    assert runner.iter == 5


def test_bad_action():
    with pytest.raises(ValueError, match='stop'):
        FiniteLossHook(action='ignore')
