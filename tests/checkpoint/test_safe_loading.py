"""Weights-only loading of mmengine checkpoints, refusal of unsafe pickles,
clear errors for corrupt files and architecture mismatches."""
import os.path as osp
import pathlib
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint

import mmslak  # noqa: F401
from mmslak.checkpoint import (MMENGINE_SAFE_GLOBALS, CheckpointMismatchError,
                               CorruptCheckpointError, UnsafeCheckpointError,
                               load_checkpoint_file, read_checkpoint)
from mmslak.models import SLaK


class _TouchOnLoad:
    """Unpickling this creates ``path`` (stands for arbitrary code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path), ))


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory, toy_runner):
    """A real checkpoint from a Runner: message hub, optimizer, param
    schedulers, EMA."""
    work_dir = str(tmp_path_factory.mktemp('runner'))
    runner = toy_runner(work_dir, by_epoch=False, length=2, interval=2)
    runner.train()
    return osp.join(work_dir, 'iter_2.pth')


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / 'code_ran'
    evil = str(tmp_path / 'evil.pth')
    torch.save(
        dict(state_dict=dict(w=torch.zeros(2)), meta=_TouchOnLoad(marker)),
        evil)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(evil)
    assert evil in str(info.value)
    assert 'pathlib.Path' in str(info.value)
    # mmengine's own local loader (left as it is) relies on torch's
    # weights-only default, which refuses it too
    with pytest.raises(pickle.UnpicklingError, match='pathlib'):
        load_checkpoint(torch.nn.Linear(2, 2), evil)
    assert not marker.exists()
    # the payload is live: unrestricted unpickling would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize('name',
                         ['__init__', 'register_statistics', 'statistics'])
def test_restricted_getattr(tmp_path, name):
    # getattr is allowed only for HistoryBuffer's 4 default statistics
    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, name))

    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(x=Sneaky()), path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        load_checkpoint_file(path)


def test_runner_checkpoint_needs_exactly_the_allow_list(runner_ckpt):
    from torch.serialization import (add_safe_globals, clear_safe_globals,
                                     get_safe_globals,
                                     get_unsafe_globals_in_checkpoint)
    registered = get_safe_globals()
    clear_safe_globals()
    try:
        needed = set(get_unsafe_globals_in_checkpoint(runner_ckpt))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(runner_ckpt, weights_only=True)
    finally:
        add_safe_globals(registered)
    allowed = {name for _, name in MMENGINE_SAFE_GLOBALS}
    assert needed <= allowed, needed - allowed
    # the other direction: every entry not needed here is one the module
    # documents for other files (numpy 1.x/2.x module names, the dtype
    # classes of other logged scalar types); nothing else, no callable
    numpy2 = int(np.__version__.split('.')[0]) >= 2
    other_numpy = 'numpy.core.' if numpy2 else 'numpy._core.'
    unneeded = allowed - needed
    assert {
        n
        for n in unneeded if not n.startswith((other_numpy, 'numpy.dtypes.'))
    } == set(), unneeded
    assert 'builtins.getattr' in needed  # HistoryBuffer's statistics
    # HistoryBuffer and numpy are what mmengine adds beyond tensors
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    ckpt = load_checkpoint_file(runner_ckpt)
    assert {
        'meta', 'state_dict', 'optimizer', 'param_schedulers', 'message_hub',
        'ema_state_dict'
    } <= set(ckpt)
    scalars = ckpt['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    values, counts = scalars['train/loss'].data
    assert len(values) == 2 and counts.tolist() == [1, 1]
    # the statistics methods survived unpickling (restricted getattr)
    assert scalars['train/loss'].mean() == pytest.approx(values.mean())


def test_runner_resume_restores_message_hub_and_optimizer(
        runner_ckpt, tmp_path, toy_runner):
    saved = load_checkpoint_file(runner_ckpt)
    runner = toy_runner(
        str(tmp_path),
        by_epoch=False,
        length=2,
        interval=2,
        resume_from=runner_ckpt)
    runner.train()  # resumes at iter 2 of 2: restores state, trains nothing
    assert runner.iter == 2
    hub = runner.message_hub.log_scalars['train/loss']
    torch.testing.assert_close(
        torch.as_tensor(hub.data[0]),
        torch.as_tensor(
            saved['message_hub']['log_scalars']['train/loss'].data[0]))
    state = runner.optim_wrapper.optimizer.state_dict()['state']
    for idx, saved_state in saved['optimizer']['state'].items():
        torch.testing.assert_close(state[idx]['exp_avg'],
                                   saved_state['exp_avg'])


@pytest.mark.parametrize('damage', ['truncate', 'empty', 'garbage'])
def test_corrupt_checkpoint(runner_ckpt, tmp_path, damage):
    data = open(runner_ckpt, 'rb').read()
    path = str(tmp_path / f'{damage}.pth')
    with open(path, 'wb') as f:
        if damage == 'truncate':
            f.write(data[:len(data) // 2])
        elif damage == 'garbage':
            f.write(b'not a checkpoint' * 100)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_file(path)
    assert path in str(info.value)
    with pytest.raises(CorruptCheckpointError):  # mmslak's one reader
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))


def _save_backbone(path, backbone, drop=()):
    sd = {
        f'backbone.{k}': v
        for k, v in backbone.state_dict().items()
        if not k.startswith(tuple(drop))
    }
    torch.save(dict(state_dict=sd), path)


def _strict(checkpoint, prefix='backbone.', **kwargs):
    return dict(
        type='PretrainedStrict',
        checkpoint=checkpoint,
        prefix=prefix,
        **kwargs)


# ImageNet classifier -> dense backbone: per-stage norms are new, the
# classifier's final norm is ignored
DENSE = dict(new_layers=['norm0.', 'norm1.'], ignore_keys=['norm.'])


def test_pretrained_init_is_strict(tmp_path, tiny_arch):
    source = SLaK(arch=tiny_arch, width_factor=1.0)
    good = str(tmp_path / 'good.pth')
    _save_backbone(good, source)

    dense = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        out_indices=(0, 1),
        gap_before_final_norm=False,
        init_cfg=_strict(good, **DENSE))
    dense.init_weights()
    for name, value in source.state_dict().items():
        if not name.startswith('norm'):
            torch.testing.assert_close(dense.state_dict()[name], value)
    # without the layout allowances the same load is refused
    dense = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        out_indices=(0, 1),
        gap_before_final_norm=False,
        init_cfg=_strict(good))
    with pytest.raises(CheckpointMismatchError, match='norm0.weight'):
        dense.init_weights()

    # a checkpoint missing backbone keys fails loudly, naming them
    partial = str(tmp_path / 'partial.pth')
    _save_backbone(partial, source, drop=('stages.1', ))
    model = SLaK(
        arch=tiny_arch, width_factor=1.0, init_cfg=_strict(partial, **DENSE))
    with pytest.raises(CheckpointMismatchError) as info:
        model.init_weights()
    n_dropped = sum(k.startswith('stages.1') for k in source.state_dict())
    assert f'missing in the checkpoint {n_dropped}:' in str(info.value)
    assert 'stages.1.0.gamma' in str(info.value)

    # wrong architecture (other kernel sizes): shape mismatch names keys
    other = SLaK(
        arch=dict(tiny_arch, kernel_sizes=[9, 5]),
        width_factor=1.0,
        init_cfg=_strict(good))
    with pytest.raises(CheckpointMismatchError) as info:
        other.init_weights()
    assert 'stages.0.0.large_kernel.LoRA1.conv.weight: (8, 1, 7, 5) vs ' \
        '(8, 1, 9, 5)' in str(info.value)

    # a wrong prefix matches nothing
    model = SLaK(
        arch=tiny_arch, width_factor=1.0, init_cfg=_strict(good, 'bb.'))
    with pytest.raises(CheckpointMismatchError, match="prefix 'bb.'"):
        model.init_weights()


def test_pretrained_strict_on_any_backbone(tmp_path):
    from mmengine.model import BaseModule

    class Tiny(BaseModule):

        def __init__(self, width, init_cfg=None):
            super().__init__(init_cfg=init_cfg)
            self.conv = torch.nn.Conv2d(3, width, 3)

    path = str(tmp_path / 'tiny.pth')
    source = Tiny(4)
    torch.save(dict(state_dict=source.state_dict()), path)
    model = Tiny(4, init_cfg=_strict(path, prefix=None))
    model.init_weights()
    torch.testing.assert_close(model.conv.weight, source.conv.weight)
    # the oracle: mmengine's Pretrained (left as it is) accepts a wrong
    # width silently, the strict one refuses it
    Tiny(8, init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()
    with pytest.raises(CheckpointMismatchError, match='conv.weight'):
        Tiny(8, init_cfg=_strict(path, prefix=None)).init_weights()


def test_load_from_partial_checkpoint_fails_with_hook(runner_ckpt, tmp_path,
                                                      toy_runner):
    ckpt = load_checkpoint_file(runner_ckpt)
    partial = {
        k: v
        for k, v in ckpt['state_dict'].items()
        if not k.startswith('backbone.stages.1')
    }
    path = str(tmp_path / 'partial.pth')
    torch.save(dict(state_dict=partial), path)

    # mmengine alone: a warning in the log, training goes on
    runner = toy_runner(str(tmp_path / 'a'), False, 1, 1)
    runner.call_hook('before_run')  # EMAHook builds its model here
    runner._load_from = path
    runner.load_or_resume()

    # with the hook: a clear error naming the missing backbone keys
    runner = toy_runner(str(tmp_path / 'b'), False, 1, 1)
    runner.register_hook(dict(type='CheckpointMatchHook'))
    runner.call_hook('before_run')
    runner._load_from = path
    with pytest.raises(CheckpointMismatchError) as info:
        runner.load_or_resume()
    assert 'backbone.stages.1.0.gamma' in str(info.value)

    # the full checkpoint passes (head keys are checked for shapes only)
    runner._load_from = runner_ckpt
    runner._has_loaded = False
    runner.load_or_resume()
