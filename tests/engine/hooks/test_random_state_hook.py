"""RandomStateHook: a resumed run draws the same random numbers as the
uninterrupted one (python, numpy, torch; in the data pipeline, the model and
between validations). The real recipe end to end is in
test_fault_injection.py."""
import io
import logging
import os.path as osp
import random
import re
from types import SimpleNamespace

import mmengine.dist
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import CheckpointHook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import save_checkpoint
from torch.utils.data import Dataset

import mmslak  # noqa: F401
from mmslak.checkpoint import load_checkpoint_file
from mmslak.cli.train_test import seed_from_resumed_checkpoint
from mmslak.engine.hooks.random_state_hook import (RandomStateHook,
                                                   capture_random_state,
                                                   restore_random_state)


def _draws():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_capture_then_restore_repeats_every_generator():
    state = capture_random_state()
    first = _draws()
    _draws()
    restore_random_state(state)
    assert _draws() == first
    restore_random_state(state)
    assert _draws() != _draws()  # the generators do move on


class _NoisyData(Dataset):
    """Augmentation with python's and numpy's generators (as mmcv's
    transforms) in the main process (num_workers=0)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.full((4, ), float(i))
        x = x + float(np.random.randn()) + random.random()
        return dict(inputs=x, targets=i % 2)


class _NoisyModel(BaseModel):
    """Drop-path-like torch noise in training."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, inputs, targets=None, mode='tensor'):
        if self.training:
            inputs = inputs * (torch.rand_like(inputs) > 0.3)
        logits = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, targets))
        return [dict(pred=p) for p in logits]


class _Metric(BaseMetric):
    """Draws during validation, as a DataLoader iterator does."""

    def process(self, data_batch, data_samples):
        torch.rand(1)
        np.random.rand()
        self.results.append(0.)

    def compute_metrics(self, results):
        return dict(score=0.)


def _runner(work_dir, hook, max_iters, val_interval=2, resume=False):
    loader = dict(
        dataset=_NoisyData(),
        sampler=dict(type='InfiniteSampler', shuffle=True),
        batch_size=2,
        collate_fn=dict(type='default_collate'))
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=_NoisyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=dict(loader, sampler=dict(type='DefaultSampler')),
        val_evaluator=[_Metric()],
        val_cfg=dict(),
        train_cfg=dict(
            by_epoch=False, max_iters=max_iters, val_interval=val_interval),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3,
                            by_epoch=False)),
        custom_hooks=[dict(type='RandomStateHook')] if hook else [],
        randomness=dict(seed=0),
        resume=resume,
        log_level='WARNING',
        default_scope='mmengine')


def _weights(path):
    return load_checkpoint_file(path)['state_dict']['fc.weight']


def _straight_and_resumed(tmp_path, hook, val_interval=2):
    straight, resumed = tmp_path / f'{hook}s', tmp_path / f'{hook}r'
    _runner(straight, hook, 6, val_interval).train()
    # a run killed after its checkpoint at 3, resumed in a fresh runner
    resumed.mkdir()
    ckpt = load_checkpoint_file(str(straight / 'iter_3.pth'))
    save_checkpoint(ckpt, str(resumed / 'iter_3.pth'))
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_3.pth'))
    _runner(resumed, hook, 6, val_interval, resume=True).train()
    return _weights(straight / 'iter_6.pth'), _weights(resumed / 'iter_6.pth')


def test_resumed_equals_straight(tmp_path):
    straight, resumed = _straight_and_resumed(tmp_path, hook=True)
    assert torch.equal(straight, resumed) and torch.equal(resumed, straight)
    ckpt = load_checkpoint_file(str(tmp_path / 'Trues' / 'iter_3.pth'))
    saved = ckpt['random_states']
    assert len(saved['ranks']) == 1
    assert saved['loader']['sampler'] == 'InfiniteSampler'
    assert saved['loader']['sampler_seed'] == saved['loader']['seed'] == 0
    assert ckpt['meta']['iter'] == 3
    # the test can fail: without the hook the resumed run differs
    straight, resumed = _straight_and_resumed(tmp_path, hook=False)
    assert not torch.equal(straight, resumed)


@pytest.mark.parametrize('val_interval', [1, 100])
def test_validation_does_not_change_training(tmp_path, val_interval):
    _runner(tmp_path / 'a', True, 4, val_interval=val_interval).train()
    _runner(tmp_path / 'b', True, 4, val_interval=3).train()
    a, b = (_weights(tmp_path / d / 'iter_3.pth') for d in 'ab')
    assert torch.equal(a, b)
    if val_interval == 1:  # without the hook, validating changes training
        _runner(tmp_path / 'c', False, 4, val_interval=1).train()
        _runner(tmp_path / 'd', False, 4, val_interval=3).train()
        c, d = (_weights(tmp_path / d / 'iter_3.pth') for d in 'cd')
        assert not torch.equal(c, d)


def test_resume_without_states_warns(tmp_path, train_logged):
    _runner(tmp_path / 'a', False, 3).train()
    text = train_logged(_runner(tmp_path / 'a', True, 4, resume=True))
    warning = [line for line in text.splitlines() if 'WARNING' in line]
    assert any('RandomStateHook' in line and 'random states' in line
               for line in warning), text[-2000:]


def test_seed_none_resumes_with_the_checkpoint_seed(tmp_path):
    save_checkpoint(dict(meta=dict(seed=1234)), str(tmp_path / 'iter_2.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    cfg = Config(
        dict(
            randomness=dict(seed=None, deterministic=False),
            resume=True,
            load_from=None,
            work_dir=str(tmp_path)))
    seed_from_resumed_checkpoint(cfg)
    assert cfg.randomness == dict(seed=1234, deterministic=False)
    # a seed set by the user, or no resume: untouched
    for given in (dict(randomness=dict(seed=7), resume=True),
                  dict(randomness=dict(seed=None), resume=False)):
        cfg = Config(dict(given, load_from=None, work_dir=str(tmp_path)))
        seed_from_resumed_checkpoint(cfg)
        assert cfg.randomness.seed == given['randomness']['seed']
    assert osp.isfile(tmp_path / 'iter_2.pth')


def test_resume_on_another_gpu_count_restores_the_rest_and_warns(
        tmp_path, train_logged):
    """The checkpoint of a run on more GPUs than this process sees (faked:
    its CUDA generator list is longer): CPU, numpy and python states are
    restored (the resumed run still equals the uninterrupted one) and the
    mismatch is warned about, naming both counts."""
    _runner(tmp_path / 's', True, 6).train()
    ckpt = load_checkpoint_file(str(tmp_path / 's' / 'iter_3.pth'))
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    real = torch.cuda.get_rng_state_all() if visible else []
    fake = torch.zeros(16, dtype=torch.uint8)  # never restored below
    ckpt['random_states']['ranks'][0]['cuda'] = real + [fake] * 2
    resumed = tmp_path / 'r'
    resumed.mkdir()
    save_checkpoint(ckpt, str(resumed / 'iter_3.pth'))
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_3.pth'))
    text = train_logged(_runner(resumed, True, 6, resume=True))
    assert f'holds {visible + 2} CUDA generator states' in text
    assert f'sees {visible} CUDA devices' in text
    assert 'same world size' in text
    straight = _weights(tmp_path / 's' / 'iter_6.pth')
    assert torch.equal(_weights(resumed / 'iter_6.pth'), straight)


def test_fewer_gpus_than_saved_restores_the_matching_generators(
        monkeypatch, caplog):
    state = capture_random_state()
    first = _draws()
    saved = [torch.full((4, ), 1, dtype=torch.uint8), torch.zeros(4)]
    state['cuda'] = saved
    restored = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'set_rng_state',
                        lambda s, device: restored.append((s, device)))
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    try:
        restore_random_state(state)
        assert _draws() == first
        assert restored == [(saved[0], 0)]
        warnings = [
            r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        assert 'holds 2 CUDA generator states' in warnings[0]
        assert 'sees 1 CUDA devices' in warnings[0]
        restore_random_state(dict(state, cuda=[]))  # saved on the CPU
        assert len(caplog.records) == 1 and len(restored) == 1
    finally:
        logger.removeHandler(caplog.handler)


def _two_ranks(monkeypatch, world_size=2):
    """Fakes ``world_size`` ranks; returns the list of states this rank
    hands to all_gather_object (its answer: ``[state, 'rank 1']``)."""
    gathered = []

    def all_gather_object(state):
        gathered.append(state)
        return [state, 'rank 1']

    monkeypatch.setattr(mmengine.dist, 'get_world_size', lambda *a: world_size)
    monkeypatch.setattr(mmengine.dist, 'get_rank', lambda *a: 0)
    monkeypatch.setattr(mmengine.dist, 'all_gather_object', all_gather_object)
    return gathered


def _fake_runner(*hooks, **attrs):
    return SimpleNamespace(**dict(
        dict(
            hooks=list(hooks),
            iter=0,
            epoch=0,
            max_iters=100,
            max_epochs=100,
            seed=0,
            train_dataloader=SimpleNamespace()), **attrs))


def _is_this_rank_now(state):
    """``state`` is this process's random state at this moment."""
    return isinstance(state, dict) and torch.equal(state['torch'],
                                                   torch.get_rng_state())


def test_ranks_are_gathered_only_for_a_checkpoint(monkeypatch):
    """Two ranks (faked): no collective in an iteration that writes no
    checkpoint; one all_gather_object where CheckpointHook saves."""
    gathered = _two_ranks(monkeypatch)
    runner = _fake_runner(CheckpointHook(interval=5, by_epoch=False))
    hook = RandomStateHook()
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)  # before any iteration
    assert _is_this_rank_now(ckpt['random_states']['ranks'][0])
    for runner.iter in range(4):
        hook.after_train_iter(runner, runner.iter)
    assert gathered == []
    runner.iter = 4  # CheckpointHook saves after iteration 5
    hook.after_train_iter(runner, 4)
    assert len(gathered) == 1 and _is_this_rank_now(gathered[0])
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt['random_states']['ranks'] == [gathered[0], 'rank 1']
    runner.iter = 5
    hook.after_train_iter(runner, 5)
    assert len(gathered) == 1
    hook.before_save_checkpoint(runner, ckpt)  # a save no hook announced
    ranks = ckpt['random_states']['ranks']
    assert _is_this_rank_now(ranks[0]) and ranks[1] is None
    runner.iter = 99  # the last iteration: save_last
    hook.after_train_iter(runner, 99)
    assert len(gathered) == 2


def test_epoch_checkpoints_and_best_checkpoints_gather(monkeypatch):
    gathered = _two_ranks(monkeypatch)
    runner = _fake_runner(CheckpointHook(interval=2, save_last=False))
    hook = RandomStateHook()
    hook.before_val(runner)  # no state yet: nothing to gather
    hook.after_train_iter(runner, 0)  # by epoch: no save after iterations
    hook.after_train_epoch(runner)  # epoch 1 of 2
    assert gathered == []
    runner.epoch = 1
    hook.after_train_epoch(runner)
    assert len(gathered) == 1 and _is_this_rank_now(gathered[0])
    hook.before_val(runner)  # already gathered for this state
    hook.after_val(runner)
    assert len(gathered) == 1
    hook.after_train_iter(runner, 1)
    hook.before_val(runner)  # no best checkpoint can be saved after it
    hook.after_val(runner)
    assert len(gathered) == 1
    runner.hooks.append(CheckpointHook(interval=-1, save_best='auto'))
    hook.before_val(runner)
    assert len(gathered) == 2


def test_one_process_never_gathers(monkeypatch):
    gathered = _two_ranks(monkeypatch, world_size=1)
    runner = _fake_runner(CheckpointHook(interval=1, by_epoch=False))
    hook = RandomStateHook()
    hook.after_train_iter(runner, 0)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    assert gathered == []
    assert len(ckpt['random_states']['ranks']) == 1
    assert ckpt['random_states']['version'] == 1


@pytest.mark.parametrize('ranks', [[None, 'x'], []])
def test_a_rank_without_saved_states_warns_and_restores_nothing(ranks):
    warned = []
    runner = _fake_runner(
        iter=3,
        logger=SimpleNamespace(warning=warned.append, info=warned.append),
        train_loop=SimpleNamespace())
    hook = RandomStateHook()
    hook.after_load_checkpoint(
        runner, dict(random_states=dict(ranks=ranks, loader={})))
    hook.before_train(runner)
    assert any('no random states for rank 0' in w for w in warned), warned
    hook.before_train_epoch(runner)  # restores nothing (and does not fail)


def test_gathers_follow_save_begin_and_save_last(monkeypatch):
    gathered = _two_ranks(monkeypatch)
    hook = RandomStateHook()
    late = dict(interval=1, save_begin=3, save_last=False)
    runner = _fake_runner(
        CheckpointHook(by_epoch=False, **late), max_iters=2, max_epochs=2)
    hook.after_train_iter(runner, 0)
    runner.hooks = [CheckpointHook(**late)]
    hook.after_train_epoch(runner)
    runner.epoch = 1  # the last epoch, but save_last=False
    hook.after_train_epoch(runner)
    assert gathered == []
    runner.hooks.append(CheckpointHook(interval=-1, save_last=True))
    hook.after_train_epoch(runner)
    assert len(gathered) == 1


def test_the_saved_loader_record_and_the_changes_resume_warns_about(
        monkeypatch):
    _two_ranks(monkeypatch)
    monkeypatch.setattr(mmengine.dist, 'get_rank', lambda *a: 1)
    sampler = SimpleNamespace(seed=7)
    runner = _fake_runner(
        seed=7,
        train_dataloader=SimpleNamespace(
            sampler=sampler,
            batch_size=4,
            num_workers=3,
            persistent_workers=True))
    ckpt = {}
    RandomStateHook().before_save_checkpoint(runner, ckpt)
    # mmengine's worker_init_fn seed: num_workers * rank + worker_id + seed
    assert ckpt['random_states']['loader'] == dict(
        seed=7,
        sampler='SimpleNamespace',
        sampler_seed=7,
        batch_size=4,
        num_workers=3,
        persistent_workers=True,
        worker_seeds=[10, 11, 12],
        world_size=2)
    warned = []
    resumed = _fake_runner(
        iter=5,
        seed=1,
        logger=SimpleNamespace(warning=warned.append, info=warned.append),
        train_loop=SimpleNamespace(),  # epoch-based: no dataloader_iterator
        train_dataloader=SimpleNamespace(
            sampler=sampler,
            batch_size=8,
            num_workers=3,
            persistent_workers=True))
    hook = RandomStateHook()
    hook.after_load_checkpoint(resumed, ckpt)
    hook.before_train(resumed)
    text = '\n'.join(warned)
    for named in ('seed: 7 -> 1', 'batch_size: 4 -> 8',
                  'persistent_workers=True'):
        assert named in text, text
    for unchanged in ('sampler_seed', 'num_workers', 'world_size'):
        assert unchanged not in text, text
    # one warning names the hook and every change, persistent_workers too
    stream, = (w for w in warned if 'batch_size: 4 -> 8' in w)
    assert _names(stream, 'RandomStateHook'), stream
    assert _names(stream, 'persistent_workers'), stream


def _names(text, word):
    """``text`` names ``word`` as a word of its own (not glued to another
    word: a name, not its wording)."""
    return re.search(rf'(?<!\w){re.escape(word)}(?!\w)', text) is not None


def _logger():
    """A runner logger stand-in; returns ``(warnings, infos, logger)``."""
    warnings, infos = [], []
    return warnings, infos, SimpleNamespace(
        warning=warnings.append, info=infos.append)


class _Snapshot:
    """The python, numpy and torch CPU states of this moment, taken and
    put back with the generators' own API (not the code under test)."""

    def __init__(self):
        self.states = (random.getstate(), np.random.get_state(),
                       torch.get_rng_state())

    def draws(self):
        """What ``_draws()`` gives from this snapshot (the generators are
        left where that leaves them)."""
        py, nps, cpu = self.states
        random.setstate(py)
        np.random.set_state(nps)
        torch.set_rng_state(cpu)
        return _draws()


def test_the_captured_state_is_each_generators_own_state():
    """Each generator's state word for word, in types the weights-only
    loader reads: the 624 numpy key words stay integers."""
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = capture_random_state()
    version, internal, gauss = random.getstate()
    assert state['python'] == (version, list(internal), gauss)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    saved_kind, saved_keys, *rest = state['numpy']
    assert saved_kind == kind == 'MT19937'
    assert rest == [pos, has_gauss, cached]
    assert not saved_keys.is_floating_point()
    assert saved_keys.tolist() == keys.tolist()
    assert torch.equal(state['torch'], torch.get_rng_state())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    first = _draws()
    restore_random_state(loaded)
    assert _draws() == first


def test_cuda_generators_are_captured_once_cuda_is_initialised(monkeypatch):
    """A process that has not started CUDA saves no CUDA state (reading
    it would initialise CUDA); one that has saves every device's."""
    fake = [torch.full((4, ), 7, dtype=torch.uint8), torch.zeros(4)]
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: False)
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: list(fake))
    assert capture_random_state()['cuda'] == []
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    cuda = capture_random_state()['cuda']
    assert len(cuda) == 2
    assert all(torch.equal(a, b) for a, b in zip(cuda, fake))


def test_worker_seeds_follow_mmengines_formula_on_every_rank(monkeypatch):
    """Rank 2 of 3, two workers, seed 5: mmengine's worker_init_fn seeds
    worker w with num_workers * rank + w + seed."""
    _two_ranks(monkeypatch, world_size=3)
    monkeypatch.setattr(mmengine.dist, 'get_rank', lambda *a: 2)
    runner = _fake_runner(
        seed=5, train_dataloader=SimpleNamespace(num_workers=2))
    ckpt = {}
    RandomStateHook().before_save_checkpoint(runner, ckpt)
    loader = ckpt['random_states']['loader']
    assert loader['worker_seeds'] == [2 * 2 + 0 + 5, 2 * 2 + 1 + 5]
    assert loader['world_size'] == 3
    assert len(ckpt['random_states']['ranks']) == 3


def test_a_loader_without_worker_attributes_records_no_workers():
    """A loader that has no ``num_workers`` / ``persistent_workers``
    (a plain iterable) loads in the main process."""
    ckpt = {}
    RandomStateHook().before_save_checkpoint(
        _fake_runner(seed=3, train_dataloader=SimpleNamespace()), ckpt)
    loader = ckpt['random_states']['loader']
    assert loader['num_workers'] == 0
    assert loader['worker_seeds'] == []
    assert loader['persistent_workers'] is False
    assert loader['sampler_seed'] is None and loader['batch_size'] is None


def _saved(runner):
    """A checkpoint saved by the hook now, and the draws the
    uninterrupted run makes right after it."""
    ckpt = {}
    RandomStateHook().before_save_checkpoint(runner, ckpt)
    return ckpt, _draws()


def test_an_epoch_based_resume_restores_at_the_first_epoch():
    warnings, infos, logger = _logger()
    runner = _fake_runner(
        epoch=3,
        iter=17,
        logger=logger,
        train_loop=SimpleNamespace(),  # epoch-based: no dataloader_iterator
        train_dataloader=SimpleNamespace(num_workers=0))
    ckpt, first = _saved(runner)
    _draws()  # the killed run moved on; a fresh process starts elsewhere
    hook = RandomStateHook()
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    assert warnings == []  # same loader, world size and rank count
    info, = infos
    assert _names(info, 'RandomStateHook') and _names(info, '0'), info
    assert _names(info, '3') and _names(info, '17'), info  # epoch, iter
    before = _Snapshot()
    assert _draws() == before.draws()  # not restored before the epoch
    hook.before_train_epoch(runner)
    assert _draws() == first
    again = _Snapshot()
    hook.before_train_epoch(runner)  # the next epoch: nothing left to do
    assert _draws() == again.draws()


class _Batches:
    """A train loop's iterator with an attribute of its own (as mmengine's
    ``_InfiniteDataloaderIterator`` has ``dataloader``)."""

    def __init__(self):
        self.dataloader = 'the loader'
        self.fetched = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.fetched += 1
        return self.fetched


def test_an_iteration_based_resume_restores_after_the_skipped_batches():
    """mmengine replays the 2 batches trained before the checkpoint; the
    states are restored just before the third is fetched. Persistent
    workers are fine here (the iterator, and its workers, are rebuilt and
    replayed)."""
    warnings, infos, logger = _logger()
    loop = SimpleNamespace(iter=2, dataloader_iterator=_Batches())
    runner = _fake_runner(
        iter=2,
        logger=logger,
        train_loop=loop,
        train_dataloader=SimpleNamespace(
            num_workers=2, persistent_workers=True))
    ckpt, first = _saved(runner)
    hook = RandomStateHook()
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    assert warnings == [] and len(infos) == 1
    hook.before_train_epoch(runner)
    assert loop.dataloader_iterator.dataloader == 'the loader'
    moved = _Snapshot()
    assert [next(loop.dataloader_iterator) for _ in range(2)] == [1, 2]
    assert _draws() == moved.draws()  # the replayed batches restore nothing
    assert next(loop.dataloader_iterator) == 3
    assert _draws() == first
    again = _Snapshot()
    assert next(loop.dataloader_iterator) == 4  # restored once only
    assert _draws() == again.draws()


@pytest.mark.parametrize('case', ['load_from', 'nothing loaded'])
def test_only_a_resume_restores_random_states(case):
    """``load_from`` (mmengine calls ``after_load_checkpoint`` for it too)
    starts a new run at iteration 0: nothing restored; a hook that loaded
    nothing restores nothing and warns about nothing."""
    warnings, infos, logger = _logger()
    position = dict(
        iter=0, epoch=0) if case == 'load_from' else dict(
            iter=5, epoch=1)
    runner = _fake_runner(
        logger=logger, train_loop=SimpleNamespace(), **position)
    ckpt, _ = _saved(runner)
    hook = RandomStateHook()
    if case == 'load_from':
        hook.after_load_checkpoint(runner, ckpt)
    now = _Snapshot()
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    assert _draws() == now.draws()
    assert warnings == [] and infos == []


def test_another_rank_count_warns_naming_both_and_restores_this_rank(
        monkeypatch):
    _two_ranks(monkeypatch, world_size=2)
    warnings, infos, logger = _logger()
    runner = _fake_runner(iter=4, logger=logger, train_loop=SimpleNamespace())
    ckpt, first = _saved(runner)
    hook = RandomStateHook()
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    assert warnings == []  # 2 ranks saved, 2 ranks now
    ckpt['random_states']['ranks'].append(None)  # saved by 3 ranks
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    warning, = warnings
    assert _names(warning, 'RandomStateHook'), warning
    assert _names(warning, '3') and _names(warning, '2'), warning
    hook.before_train_epoch(runner)
    assert _draws() == first  # rank 0's states exist: restored


def test_a_checkpoint_without_states_warns_naming_the_hook():
    warnings, infos, logger = _logger()
    runner = _fake_runner(iter=3, logger=logger, train_loop=SimpleNamespace())
    hook = RandomStateHook()
    hook.after_load_checkpoint(runner, dict(meta=dict(iter=3)))
    hook.before_train(runner)
    warning, = warnings
    assert _names(warning, 'RandomStateHook'), warning
    now = _Snapshot()
    hook.before_train_epoch(runner)
    assert _draws() == now.draws() and infos == []


def test_after_val_puts_back_the_state_of_before_val_once():
    runner = _fake_runner()
    hook = RandomStateHook()
    now = _Snapshot()
    hook.after_val(runner)  # no validation started: nothing to put back
    assert _draws() == now.draws()
    training = _Snapshot()
    hook.before_val(runner)
    _draws()  # validation draws
    hook.after_val(runner)
    assert _draws() == training.draws()
    later = _Snapshot()
    hook.after_val(runner)  # a second call: nothing left to put back
    assert _draws() == later.draws()
