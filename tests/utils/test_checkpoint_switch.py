"""check_checkpoint_match: the tools' CheckpointMatchHook default and the
one switch (--allow-partial-load) that removes it."""
from mmengine.config import Config

from mmslak.utils.cli import check_checkpoint_match

SPARSE = dict(type='SparseTrainingHook', init='checkpoint')


def _types(cfg):
    return [h['type'] for h in cfg.custom_hooks]


def test_hook_added_by_default():
    cfg = Config(dict(custom_hooks=[SPARSE]))
    check_checkpoint_match(cfg, strict=True, allow_partial=False)
    assert _types(cfg) == ['SparseTrainingHook', 'CheckpointMatchHook']
    assert cfg.custom_hooks[1]['strict'] is True
    cfg = Config(dict())
    check_checkpoint_match(cfg, strict=False, allow_partial=False)
    assert cfg.custom_hooks == [dict(type='CheckpointMatchHook', strict=False)]


def test_users_hook_kept():
    mine = dict(type='CheckpointMatchHook', prefixes=['neck.'])
    cfg = Config(dict(custom_hooks=[mine]))
    check_checkpoint_match(cfg, strict=True, allow_partial=False)
    assert cfg.custom_hooks == [mine]


def test_allow_partial_removes_it():
    cfg = Config(
        dict(custom_hooks=[SPARSE,
                           dict(type='mmslak.CheckpointMatchHook')]))
    check_checkpoint_match(cfg, strict=True, allow_partial=True)
    assert _types(cfg) == ['SparseTrainingHook']


def test_local_checkpoint_format(tmp_path):
    import pytest
    import torch

    from mmslak.checkpoint import CorruptCheckpointError
    from mmslak.utils.cli import check_local_checkpoint
    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    with pytest.raises(
            CorruptCheckpointError, match='is not a PyTorch checkpoint'):
        check_local_checkpoint(str(text))
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {}}, str(good))
    check_local_checkpoint(str(good))  # passes
    check_local_checkpoint(None)  # no load_from
    check_local_checkpoint('https://example.com/x.pth')  # left to loaders
