"""SparseTrainingHook in real (tiny) mmengine Runner trainings."""
import copy
import itertools
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from child_process import run_in_checkout
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict

from mmslak.sparse import (cosine_prune_rate, masks_from_checkpoint,
                           sparsity_table)
from mmslak.sparse.prune_grow import num_to_prune


class Checker(Hook):
    """After every iteration: masked weights are exactly zero, per-layer
    active counts are those of the first iteration, the total is the target
    density (to one weight); at each update pruned == regrown == the
    scheduled count and the pruned weights were the smallest."""

    priority = 'LOW'  # after SparseTrainingHook (55)

    def __init__(self, sparse_hook, density, p0=0.5, snapshot=None):
        self.sparse_hook = sparse_hook
        self.density = density
        self.p0 = p0
        self.snapshot = snapshot
        self.iters = 0
        self.updates = 0
        self.pruned_checked = 0

    def before_train(self, runner):
        hook = self.sparse_hook(runner)
        self.counts = hook.masks.counts()
        stats = hook.masks.stats()
        assert stats['active'] == round(self.density * stats['total'])

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        hook = self.sparse_hook(runner)
        masks = hook.masks
        for name in masks.names():
            weight = masks.params[name]
            assert (weight[~masks.mask(name)] == 0).all(), name
        assert masks.counts() == self.counts
        stats = masks.stats()
        assert stats['active'] == round(self.density * stats['total'])
        if hook.sparsity.num_updates > self.updates:
            self.updates = hook.sparsity.num_updates
            rate = cosine_prune_rate(runner.iter + 1, runner.max_iters,
                                     self.p0)
            for name, rec in hook.sparsity.last_update.items():
                want = num_to_prune(self.counts[name], rate)
                assert rec['pruned'] == rec['regrown'] == want, name
            if self.snapshot is not None:
                self._check_smallest_pruned(masks, hook.sparsity.last_update)
        self.iters += 1

    def _check_smallest_pruned(self, masks, last_update):
        """Each weight dropped was among the ``pruned`` smallest active
        magnitudes (a pruned weight may be regrown at once)."""
        before, old_masks = self.snapshot.weights, self.snapshot.masks
        for name in masks.names():
            w0 = before[name]
            old, new = old_masks[name], masks.mask(name)
            dropped = old & ~new
            num = last_update[name]['pruned']
            if dropped.any():
                limit = w0[old].abs().sort().values[num - 1]
                assert w0[dropped].abs().max() <= limit, name
                self.pruned_checked += 1


class Snapshot(Hook):
    """Copies weights and masks just before an update."""

    priority = 'HIGH'

    def __init__(self, sparse_hook):
        self.sparse_hook = sparse_hook

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        masks = self.sparse_hook(runner).masks
        self.weights = {
            n: masks.params[n].detach().clone()
            for n in masks.names()
        }
        self.masks = masks.bool_masks()


def _hook(**kw):
    cfg = dict(
        type='SparseTrainingHook',
        density=0.6,
        init='snip',
        update_interval=2,
        prune_rate=0.5,
        log_per_layer=False)
    cfg.update(kw)
    return cfg


def test_snip_adamw_density_invariant_and_updates(tmp_path, build_runner,
                                                  sparse_hook):
    snap = Snapshot(sparse_hook)
    checker = Checker(sparse_hook, 0.6, snapshot=snap)
    runner = build_runner(
        tmp_path, _hook(), max_iters=8, extra_hooks=[snap, checker])
    first = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
    runner.train()
    hook = sparse_hook(runner)
    assert checker.iters == 8
    assert checker.updates == hook.sparsity.num_updates == 3
    assert checker.pruned_checked > 10
    stats = hook.masks.stats()
    assert stats['explored_ratio'] > stats['density']
    # the hook's scalars reach the message hub
    hub = runner.message_hub
    assert hub.get_scalar('train/sparsity_density').current() == \
        pytest.approx(stats['density'])
    # it trained: the weights moved
    moved = [
        not torch.equal(first[n], p)
        for n, p in runner.model.named_parameters()
    ]
    assert sum(moved) > len(moved) // 2


def test_amp_bf16_with_skipped_step_erk(tmp_path, monkeypatch, build_runner,
                                        sparse_hook):
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    model_params = None  # the wrapper is built against the runner's model
    checker = Checker(sparse_hook, 0.6)
    runner = build_runner(
        tmp_path,
        _hook(init='erk'),
        max_iters=6,
        optim_wrapper=dict(
            type='AmpOptimWrapper',
            dtype='bfloat16',
            optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)),
        extra_hooks=[checker])
    del model_params
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    assert isinstance(runner.optim_wrapper, AmpOptimWrapper)
    # a CPU grad scaler whose first step overflows: that step is skipped
    runner.optim_wrapper.loss_scaler = torch.amp.GradScaler(
        'cpu', init_scale=2.**127, backoff_factor=2.**-100)
    steps = []
    runner.optim_wrapper.optimizer.register_step_post_hook(
        lambda *a: steps.append(1))
    runner.train()
    assert checker.iters == 6
    assert 0 < len(steps) < 6  # some steps were skipped, some taken
    assert runner.optim_wrapper.loss_scaler.get_scale() < 2.**127


def test_gradient_accumulation_uniform(tmp_path, build_runner, sparse_hook):
    checker = Checker(sparse_hook, 0.6)
    runner = build_runner(
        tmp_path,
        _hook(init='uniform', update_interval=2),
        max_iters=9,
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
            accumulative_counts=3),
        extra_hooks=[checker])
    steps = []
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.optim_wrapper.optimizer.register_step_post_hook(
        lambda *a: steps.append(1))
    runner.train()
    assert checker.iters == 9 and len(steps) == 3
    # the interval counts optimizer steps (3 iterations each): one update,
    # after step 2 = iteration 6 (step 4 would be past the run)
    assert sparse_hook(runner).sparsity.num_updates == 1
    for n, c in sparse_hook(runner).masks.counts().items():
        numel = sparse_hook(runner).masks.params[n].numel()
        assert abs(c - 0.6 * numel) < 1


def test_gradient_growth_large_kernel_scope_with_ema(tmp_path, build_runner,
                                                     sparse_hook):
    checker = Checker(sparse_hook, 0.5)
    runner = build_runner(
        tmp_path,
        _hook(
            init='uniform',
            density=0.5,
            scope='large_kernel',
            growth='gradient'),
        max_iters=6,
        ckpt_interval=6,
        extra_hooks=[
            checker,
            dict(type='EMAHook', momentum=0.5, priority='ABOVE_NORMAL')
        ])
    runner.train()
    hook = sparse_hook(runner)
    assert hook.sparsity.num_updates == 2 and checker.iters == 6
    assert all('LoRA' in n for n in hook.masks.names())
    assert len(hook.masks) == 8
    # EMAHook saves the averaged weights as 'state_dict' and the raw ones
    # as 'ema_state_dict': both are sparse
    ckpt = torch.load(
        tmp_path / 'iter_6.pth', map_location='cpu', weights_only=True)
    masks = masks_from_checkpoint(ckpt)  # bit-packed in the file
    for name, mask in masks.items():
        ema = ckpt['ema_state_dict']['module.' + name]
        assert (ema[~mask] == 0).all() and (ema[mask] != 0).any(), name
        assert (ckpt['state_dict'][name][~mask] == 0).all(), name


def test_epoch_based_runner_schedule(tmp_path, build_runner, sparse_hook):
    """The cosine runs over runner.max_iters also for epoch-based loops."""
    checker = Checker(sparse_hook, 0.6)
    runner = build_runner(
        tmp_path,
        _hook(init='erk', update_interval=3),
        max_epochs=2,
        batch_size=16,  # 64 images: 4 iterations per epoch
        extra_hooks=[checker])
    runner.train()
    hook = sparse_hook(runner)
    assert runner.max_iters == 8 and checker.iters == 8
    assert hook.sparsity.num_updates == 2  # after iterations 3 and 6
    assert hook.sparsity.current_prune_rate == pytest.approx(
        cosine_prune_rate(6, 8, 0.5))


@pytest.fixture(scope='module')
def sparse_run(tmp_path_factory, build_runner, final_state, resume_hook):
    """12 uninterrupted iterations, checkpoint at 6 (updates every 2)."""
    work = tmp_path_factory.mktemp('full')
    runner = build_runner(
        work, dict(resume_hook), max_iters=12, ckpt_interval=6, name='full')
    runner.train()
    return work, final_state(runner)


def test_static_sparse_finetune_from_checkpoint(sparse_run, tmp_path,
                                                build_runner, sparse_hook):
    work, _ = sparse_run
    ckpt = os.path.join(work, 'iter_6.pth')
    saved = torch.load(ckpt, map_location='cpu', weights_only=True)
    masks = masks_from_checkpoint(saved)  # bit-packed in the file
    # the summary tool reads the Runner checkpoint: scope density 0.6
    table = sparsity_table(ckpt)
    assert table['source'] == 'sparsity'
    assert len(table['rows']) == len(masks) + len(saved['sparsity']['dense'])
    assert table['active'] == round(0.6 * table['numel'])
    # random init (no pretrained weights), masks from the file, fixed
    runner = build_runner(
        tmp_path / 'a',
        _hook(init='checkpoint', dynamic=False, mask_checkpoint=ckpt),
        max_iters=3)
    runner.train()
    hook = sparse_hook(runner)
    assert hook.sparsity.num_updates == 0
    got = hook.masks.bool_masks('cpu')
    assert got.keys() == masks.keys()
    assert all(torch.equal(got[n], masks[n]) for n in masks)
    for n in masks:
        assert (hook.masks.params[n][~masks[n]] == 0).all()
    # a reference-style checkpoint ({'model': ...}, no prefix, no masks):
    # masks are its zeros, renamed with mask_prefix_map
    ref = {
        'model': {
            k[len('backbone.'):]: v
            for k, v in saved['state_dict'].items()
            if k.startswith('backbone.')
        }
    }
    ref_path = str(tmp_path / 'ref.pth')
    torch.save(ref, ref_path)
    runner = build_runner(
        tmp_path / 'b',
        _hook(
            init='checkpoint',
            dynamic=False,
            mask_checkpoint=ref_path,
            mask_prefix_map={'': 'backbone.'}),
        max_iters=2,
        name='ref')
    runner.train()
    got = sparse_hook(runner).masks.bool_masks('cpu')
    assert 'head.weight' not in got
    want = {n: m for n, m in masks.items() if n.startswith('backbone.')}
    assert got.keys() == want.keys()
    for n in want:  # zeros of the weights (a subset of the saved masks)
        assert torch.equal(got[n], saved['state_dict'][n] != 0)
    # load_from a sparse checkpoint: masks come from its 'sparsity'
    runner = build_runner(
        tmp_path / 'c',
        _hook(init='checkpoint', dynamic=False),
        max_iters=2,
        load_from=ckpt,
        name='load')
    runner.train()
    got = sparse_hook(runner).masks.bool_masks('cpu')
    assert all(torch.equal(got[n], masks[n]) for n in masks)


def test_static_without_zeros_trains_dense(tmp_path, build_runner,
                                           sparse_hook):
    runner = build_runner(
        tmp_path, _hook(init='checkpoint', dynamic=False), max_iters=2)
    runner.train()
    hook = sparse_hook(runner)
    assert len(hook.masks) == 0 and hook.masks.stats()['density'] == 1.


@pytest.mark.multi_rank
def test_snip_with_a_gathering_syncbn_on_two_processes(tmp_path,
                                                       tiny_child_script):
    """SNIP runs on rank 0 only: a scoring copy that kept SyncBN would wait
    in its all-gather while rank 1 waits in the mask broadcast (issue 22:
    a hang; here a 30 s collective timeout, so a regression fails)."""
    proc = run_in_checkout(
        tiny_child_script, 'snip_syncbn', tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / '0.pth', weights_only=True)
    r1 = torch.load(tmp_path / '1.pth', weights_only=True)
    assert r0.keys() == r1.keys() == {'0.weight', '3.weight'}
    for n in r0:
        assert torch.equal(r0[n], r1[n]), n


# ----------------------------------------------------------------------
# the reference's dynamics, side by side (issue 23's independent oracle)
class Record(Hook):
    """The initial (masked) state, every training batch and the final
    state of a Runner run."""

    priority = 'LOWEST'  # after every other hook

    def before_train(self, runner):
        hook = sparse_hook_of(runner)
        self.initial = copy.deepcopy(runner.model.state_dict())
        self.initial_masks = hook.masks.bool_masks('cpu')
        self.batches = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.batches.append(copy.deepcopy(data_batch))


def sparse_hook_of(runner):
    return [
        h for h in runner.hooks if type(h).__name__ == 'SparseTrainingHook'
    ][0]


def cosine(it, total, start, end):
    """The reference's CosineDecay of the prune rate, closed form."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * it / total))


def reference_training(model, masks, batches, interval, momentum):
    """The reference's semantics (sparse_core.py Masking.step /
    truncate_weights / apply_mask, funcs.py magnitude_prune /
    gradient_growth, model_sema.py ModelEma.update(model, mask)), written
    from their description: dense backward, AdamW step, weights masked
    after each step, every ``interval`` steps ``ceil(p_t * active)``
    smallest magnitudes pruned and as many of the largest gradients
    regrown at 0, then the EMA updated and masked, a newly active position
    (EMA exactly 0, mask 1) taking the model's value. The EMA starts from
    the model at its first update, as mmengine's EMAHook does."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-2, weight_decay=0.05)
    params = dict(model.named_parameters())
    masks = {n: m.clone() for n, m in masks.items()}
    total, ema = len(batches), None
    for step, batch in enumerate(batches, 1):
        loss = F.cross_entropy(model(batch['inputs']), batch['labels'])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for n, m in masks.items():
                params[n].mul_(m)
            if step % interval == 0 and step < total:
                rate = cosine(step, total, 0.5, 0.005)
                for n, m in masks.items():
                    w, g = params[n], params[n].grad
                    num = math.ceil(rate * int(m.sum()))
                    score = torch.where(m, w.abs(), math.inf).flatten()
                    pruned = torch.zeros(m.numel(), dtype=torch.bool)
                    pruned[torch.sort(score, stable=True).indices[:num]] = 1
                    kept = m.flatten() & ~pruned
                    gscore = torch.where(kept, -1., g.abs().flatten())
                    grown = torch.zeros_like(pruned)
                    grown[torch.sort(gscore, descending=True,
                                     stable=True).indices[:num]] = True
                    masks[n] = (kept | grown).view(m.shape)
                    w.mul_(masks[n])
            if ema is None:
                ema = {n: p.detach().clone() for n, p in params.items()}
                continue
            for n, p in params.items():
                new = (ema[n] == 0) & masks[n] if n in masks else None
                ema[n] = ema[n] * (1 - momentum) + p.detach() * momentum
                if new is not None:
                    ema[n] = torch.where(new, p.detach(), ema[n] * masks[n])
    return masks, optimizer, ema


def test_dynamics_match_the_reference_step_by_step(tmp_path, build_runner,
                                                   tiny_slak_classifier):
    """AdamW (weight decay), EMA, gradient growth, two mask updates in 12
    steps: weights, masks, AdamW moments and EMA as the reference's."""
    record = Record()
    momentum = 0.2
    runner = build_runner(
        tmp_path,
        _hook(init='erk', growth='gradient', update_interval=5, seed=4),
        max_iters=12,
        extra_hooks=[
            dict(type='EMAHook', momentum=momentum, priority='NORMAL'), record
        ])
    runner.train()
    hook = sparse_hook_of(runner)
    assert hook.sparsity.num_updates == 2  # after steps 5 and 10
    model = tiny_slak_classifier()
    model.load_state_dict(record.initial)
    masks, optimizer, ema = reference_training(model, record.initial_masks,
                                               record.batches, 5, momentum)
    got_masks = hook.masks.bool_masks('cpu')
    assert set(got_masks) == set(masks)
    for n in masks:
        assert torch.equal(got_masks[n], masks[n]), n
        assert not torch.equal(masks[n], record.initial_masks[n]), n
    tol = dict(rtol=1e-4, atol=1e-6)
    ours = dict(runner.model.named_parameters())
    state = runner.optim_wrapper.optimizer.state
    ema_hook = [h for h in runner.hooks if type(h).__name__ == 'EMAHook'][0]
    ours_ema = dict(ema_hook.ema_model.module.named_parameters())
    for n, p in model.named_parameters():
        torch.testing.assert_close(ours[n], p, **tol, msg=n)
        for key in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(
                state[ours[n]][key], optimizer.state[p][key], **tol, msg=n)
        torch.testing.assert_close(ours_ema[n], ema[n], **tol, msg=n)


# ----------------------------------------------------------------------
# the adapter on a fake runner (fast)
class Log:
    """Records what the hook logs."""

    def __init__(self):
        self.infos, self.warnings = [], []

    def info(self, msg, *args, **kwargs):
        self.infos.append(msg)

    def warning(self, msg, *args, **kwargs):
        self.warnings.append(msg)


class TinyNet(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(0.01, 1.)


_RUNS = itertools.count()


def fake_runner(model=None, accumulation=1, max_iters=18, it=0, seed=0):
    model = model if model is not None else TinyNet()
    return SimpleNamespace(
        model=model,
        seed=seed,
        iter=it,
        max_iters=max_iters,
        logger=Log(),
        optim_wrapper=OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1),
            accumulative_counts=accumulation),
        train_dataloader=SimpleNamespace(batch_size=4),
        auto_scale_lr=None,
        hooks=[],
        message_hub=MessageHub.get_instance(f'hook_{next(_RUNS)}'))


def adapter(**kw):
    from mmslak.engine.hooks import SparseTrainingHook
    args = dict(density=0.5, init='uniform', update_interval=3, seed=5)
    args.update(kw)
    return SparseTrainingHook(**args)


@pytest.mark.parametrize('accumulation, base, per_update', [(1, None, 3),
                                                            (2, None, 6),
                                                            (1, 8, 6)])
def test_updates_every_interval_in_optimizer_steps_at_the_base_batch(
        accumulation, base, per_update):
    """update_interval 3 optimizer steps; with 2 accumulated iterations a
    step is 2 iterations; at base batch 8 and batch 4 it is 6 steps."""
    runner = fake_runner(accumulation=accumulation)
    runner.auto_scale_lr = None if base is None else dict(base_batch_size=8)
    hook = adapter(prune_rate=0.4, final_prune_rate=0.1)
    hook.before_train(runner)
    updated = []
    for it in range(runner.max_iters):
        runner.iter = it
        hook.before_train_iter(runner, it)
        before = hook.sparsity.num_updates
        hook.after_train_iter(runner, it)
        if hook.sparsity.num_updates > before:
            updated.append(it + 1)
        rate = runner.message_hub.get_scalar(
            'train/sparsity_prune_rate').current()
        assert rate == pytest.approx(cosine(it + 1, 18, 0.4, 0.1))
    assert updated == list(range(per_update, 18, per_update))  # not 18
    hub = runner.message_hub
    assert hub.get_scalar('train/sparsity_density').current() == 0.5
    assert hub.get_scalar('train/sparsity_explored').current() > 0.5
    text = '\n'.join(runner.logger.infos)
    assert f'every {per_update // accumulation} optimizer steps' in text
    assert 'density 0.500000 (124/248)' in text  # (216 + 32) / 2
    assert 'conv1.weight' in text  # the per-layer table


def test_one_accumulation_count_and_weights_outside_the_optimizers():
    model = TinyNet()
    runner = fake_runner(model)
    runner.optim_wrapper = OptimWrapperDict(
        a=OptimWrapper(
            torch.optim.SGD(model.conv1.parameters(), lr=0.1),
            accumulative_counts=2),
        b=OptimWrapper(
            torch.optim.SGD(model.fc.parameters(), lr=0.1),
            accumulative_counts=1))
    with pytest.raises(ValueError, match='accumulative_counts'):
        adapter().before_train(runner)
    runner.optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.conv1.parameters(), lr=0.1))
    adapter().before_train(runner)
    (msg, ) = runner.logger.warnings
    assert 'fc.weight' in msg and 'conv1.weight' not in msg
    # the warning names the first 5 of them
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(7)])
    runner = fake_runner(model)
    runner.optim_wrapper = OptimWrapper(
        torch.optim.SGD([model[0].bias], lr=0.1))
    adapter().before_train(runner)
    (msg, ) = runner.logger.warnings
    listed = [f'{i}.weight' for i in range(7) if f"'{i}.weight'" in msg]
    assert listed == [
        '0.weight', '1.weight', '2.weight', '3.weight', '4.weight'
    ]


def test_batch_size_from_the_batch_sampler_or_a_clear_error():
    """mmdet's AspectRatioBatchSampler leaves the loader's batch_size None;
    static (fine-tuning) runs need no batch size."""
    runner = fake_runner()
    runner.train_dataloader = SimpleNamespace(
        batch_size=None, batch_sampler=SimpleNamespace(batch_size=2))
    runner.auto_scale_lr = dict(base_batch_size=16)
    hook = adapter()
    hook.before_train(runner)
    assert hook.sparsity.update_interval == 24  # round(3 * 16 / 2)
    runner.train_dataloader.batch_sampler = None
    with pytest.raises(ValueError, match='batch size per GPU'):
        adapter().before_train(runner)
    adapter(dynamic=False).before_train(runner)


def test_resume_load_from_and_mask_checkpoints(tmp_path):
    runner = fake_runner()
    hook = adapter(init='erk', dense_threshold=None)
    hook.before_train(runner)
    for it in range(6):
        runner.iter = it
        hook.after_train_iter(runner, it)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    saved = hook.masks.bool_masks()
    # resume (iteration 6): the same masks and step count, another seed
    resumed_runner = fake_runner(copy.deepcopy(runner.model), it=6)
    resumed = adapter(init='erk', dense_threshold=None, seed=99)
    resumed.after_load_checkpoint(resumed_runner, ckpt)
    resumed.before_train(resumed_runner)
    assert resumed.sparsity.num_steps == 6
    assert resumed.sparsity.num_updates == 2
    for n in saved:
        assert torch.equal(resumed.masks.mask(n), saved[n])
    assert any('resumed' in m for m in resumed_runner.logger.infos)
    outside = adapter(exclude=['^conv1'])
    outside.after_load_checkpoint(resumed_runner, ckpt)
    with pytest.raises(KeyError, match='conv1.weight'):
        outside.before_train(resumed_runner)
    # load_from (iteration 0): new masks, and a warning saying so
    other_runner = fake_runner(copy.deepcopy(runner.model))
    other = adapter(seed=2)
    other.after_load_checkpoint(other_runner, ckpt)
    other.before_train(other_runner)
    assert "init='checkpoint'" in other_runner.logger.warnings[0]
    # init='checkpoint' keeps them, or takes a file's, renamed
    kept_runner = fake_runner()
    kept = adapter(init='checkpoint', dynamic=False)
    kept.after_load_checkpoint(kept_runner, ckpt)
    kept.before_train(kept_runner)
    assert kept_runner.logger.warnings == []
    for n in saved:
        assert torch.equal(kept.masks.mask(n), saved[n])
    path = str(tmp_path / 'ckpt.pth')
    # a checkpoint without masks: its zeros are the masks
    torch.save(
        dict(state_dict={
            f'net.{k}': m.float()
            for k, m in saved.items()
        }), path)
    filed = adapter(
        init='checkpoint',
        mask_checkpoint=path,
        mask_prefix_map={
            'other.': 'x.',
            'net.': ''
        })
    filed.before_train(fake_runner())
    for n in saved:
        assert torch.equal(filed.masks.mask(n), saved[n])


def test_an_ema_hook_after_this_hook_is_refused():
    runner = fake_runner()
    runner.hooks = [SimpleNamespace(ema_model=TinyNet(), priority='LOW')]
    with pytest.raises(ValueError, match='priority'):
        adapter().before_train(runner)
    ema = TinyNet()
    runner.hooks = [SimpleNamespace(ema_model=ema, priority='NORMAL')]
    hook = adapter()
    hook.before_train(runner)
    m = hook.masks.mask('conv1.weight')
    assert (ema.conv1.weight[~m] == 0).all()
    assert (ema.conv1.weight[m] != 0).all()


class FirstBatch(Hook):
    """Records the inputs of every training iteration."""

    def __init__(self):
        self.inputs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.inputs.append(data_batch['inputs'].clone())


@pytest.mark.parametrize('sampler', ['InfiniteSampler', 'DefaultSampler'])
def test_snip_batch_is_the_first_training_batch(tmp_path, sampler, monkeypatch,
                                                build_runner):
    """SNIP draws the batch the training loop sees first, without
    disturbing the stream (mmengine's InfiniteSampler shares one index
    generator between all iterators of a loader)."""
    from mmslak.sparse import dynamic as module
    seen = []
    real = module.snip_scores

    def spy(model, names, batches, loss_fn):
        seen.extend(b['inputs'].clone() for b in batches)
        return real(model, names, batches, loss_fn)

    monkeypatch.setattr(module, 'snip_scores', spy)
    record = FirstBatch()
    # 64 images at batch 4: 20 iterations run past the end of one pass
    runner = build_runner(
        tmp_path,
        _hook(update_interval=4),
        max_iters=20,
        extra_hooks=[record],
        sampler=sampler)
    runner.train()
    assert runner.iter == 20 and len(record.inputs) == 20
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], record.inputs[0], rtol=0, atol=0)
    firsts = {tuple(x[0, 0, 0, :4].tolist()) for x in record.inputs[:16]}
    assert len(firsts) == 16


@pytest.mark.parametrize('sampling',
                         ['sequential', 'infinite', 'batch_sampler', 'single'])
def test_snip_on_the_adapter_scores_the_first_batches(monkeypatch, sampling):
    """init='snip' scores the first ``snip_batches`` batches of the
    training loader and leaves its stream where it was, with mmengine's
    InfiniteSampler (one shared index generator) as the loader's sampler,
    inside a batch sampler (mmdet's AspectRatioBatchSampler; the loader's
    own sampler is then torch's default) or unbatched: the loop then sees
    the same first batches (fake runner, fast; the Runner version is
    test_snip_batch_is_the_first_training_batch)."""
    from mmengine.dataset import InfiniteSampler
    from torch.utils.data import BatchSampler, DataLoader, TensorDataset

    from mmslak.sparse import dynamic as dynamic_module
    seen = []

    def scores(model, names, batches, loss_fn):
        seen.extend(batches)
        return {n: model.get_parameter(n).detach().abs() for n in names}

    monkeypatch.setattr(dynamic_module, 'snip_scores', scores)
    data = TensorDataset(torch.arange(24.))

    def loader():
        if sampling == 'sequential':
            return DataLoader(data, batch_size=4)
        infinite = InfiniteSampler(data, shuffle=True, seed=3)
        if sampling == 'infinite':
            return DataLoader(data, batch_size=4, sampler=infinite)
        if sampling == 'single':
            return DataLoader(data, batch_size=None, sampler=infinite)
        return DataLoader(
            data, batch_sampler=BatchSampler(infinite, 4, drop_last=True))

    fresh = iter(loader())
    want = [next(fresh)[0] for _ in range(3)]
    assert not torch.equal(want[0], want[1])
    runner = fake_runner()
    runner.train_dataloader = loader()
    # an unbatched loader has no batch size: fixed masks need none
    hook = adapter(init='snip', snip_batches=2, dynamic=sampling != 'single')
    hook.before_train(runner)
    assert len(seen) == 2
    for got, expected in zip(seen, want):
        assert torch.equal(got[0], expected)
    assert len(hook.masks) == 2
    stream = iter(runner.train_dataloader)
    for expected in want:
        assert torch.equal(next(stream)[0], expected)
    adapter(init='uniform').before_train(fake_runner())
    assert len(seen) == 2  # no SNIP, no batch drawn


def test_stored_options_and_the_seed_of_the_masks():
    want = dict(
        density=0.5,
        init='uniform',
        scope='all',
        exclude=[],
        dynamic=True,
        prune_rate=0.5,
        final_prune_rate=0.005,
        growth='random',
        erk_power_scale=1.0,
        snip_random=True,
        dense_threshold=0.99)
    hook = adapter()
    assert hook.options == want
    hook.before_train(fake_runner())  # every option reaches DynamicSparsity
    assert {n: getattr(hook.sparsity, n) for n in want} == want
    from mmslak.engine.hooks import SparseTrainingHook
    default = SparseTrainingHook()
    assert (default.update_interval, default.snip_batches, default.seed,
            default.mask_checkpoint, default.mask_prefix_map,
            default.log_per_layer) == (2000, 1, None, None, {}, True)
    assert default.options['density'] == 0.6
    assert default.options['init'] == 'snip'
    with pytest.raises(ValueError, match='snip_batches'):
        SparseTrainingHook(snip_batches=0)
    # given values reach it normalised (density a float, exclude a list);
    # the update interval is the hook's (fixed masks: not rescaled)
    hook = adapter(density=1, exclude='^x', growth='gradient', dynamic=False)
    assert hook.options['density'] == 1.0 and hook.options['exclude'] == ['^x']
    hook.before_train(fake_runner())
    assert type(hook.sparsity.density) is float
    assert (hook.sparsity.density, hook.sparsity.exclude, hook.sparsity.growth,
            hook.sparsity.dynamic) == (1.0, ['^x'], 'gradient', False)
    assert hook.update_interval == hook.sparsity.update_interval == 3
    masks = []
    for seed, runner_seed in ((5, 0), (None, 5), (None, None), (None, 1)):
        hook = adapter(seed=seed)
        hook.before_train(fake_runner(seed=runner_seed))
        masks.append(hook.masks.mask('conv1.weight'))
    g = torch.Generator().manual_seed(5)
    want = torch.zeros(216, dtype=torch.bool)
    want[torch.randperm(216, generator=g)[:108]] = True
    assert torch.equal(masks[0].flatten(), want)
    assert torch.equal(masks[1].flatten(), want)
    g0 = torch.Generator().manual_seed(0)  # no seed at all: 0
    want0 = torch.zeros(216, dtype=torch.bool)
    want0[torch.randperm(216, generator=g0)[:108]] = True
    assert torch.equal(masks[2].flatten(), want0)
    assert not torch.equal(masks[3], masks[2])


def test_the_log_and_the_layer_table():
    runner = fake_runner(accumulation=2)
    runner.auto_scale_lr = dict(base_batch_size=16)
    hook = adapter()
    hook.before_train(runner)
    numel = sum(p.numel() for p in runner.model.parameters())  # 260
    schedule, initial, table = runner.logger.infos
    assert schedule == (
        'SparseTrainingHook: update_interval 3 optimizer steps at 16 samples'
        ' per step -> every 6 optimizer steps at 8 samples per step (1 GPUs '
        'x 4 x 2 accumulated), i.e. every 12 iterations and 48 samples')
    assert initial == (
        'SparseTrainingHook initial masks: 2 masked layers, 0 dense in '
        'scope, density 0.500000 (124/248), explored 0.5000, model active '
        f'parameters {numel - 124} of {numel}')
    # the one per-layer table (summary.format_layer_rows), after a newline
    lines = table.split('\n')
    assert lines[0] == ''
    assert [line.split() for line in lines[1:]] == [
        ['layer', 'shape', 'active', 'numel', 'density'],
        ['conv1.weight', '8x3x3x3', '108', '216', '0.5000'],
        ['fc.weight', '4x8', '16', '32', '0.5000'],
    ]
    for it in range(12):
        runner.iter = it
        hook.after_train_iter(runner, it)
    assert runner.logger.infos[-2].startswith(
        'SparseTrainingHook update 1 at iter 12, prune rate 0.')
    resumed_runner = fake_runner(it=1)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    resumed = adapter(log_per_layer=False)
    resumed.after_load_checkpoint(resumed_runner, ckpt)
    resumed.before_train(resumed_runner)
    assert resumed.sparsity.num_steps == 1
    assert resumed_runner.logger.infos[-1].startswith(
        'SparseTrainingHook resumed: 2 masked layers')
    # an entry without masks is no sparsity state: masks are drawn anew
    fresh = adapter()
    fresh.after_load_checkpoint(resumed_runner, dict(sparsity=dict(x=1)))
    fresh.before_train(resumed_runner)
    assert resumed_runner.logger.infos[-2].startswith(
        'SparseTrainingHook initial masks')


def test_the_average_is_masked_after_each_iteration_with_copy_in():
    """The EMA hook's update comes between before_train_iter and this
    hook's after_train_iter; a position active with an average of 0 takes
    the model's value; hooks without an average are skipped."""
    runner = fake_runner()
    ema = copy.deepcopy(runner.model)
    runner.hooks = [
        SimpleNamespace(priority='NORMAL'),
        SimpleNamespace(ema_model=None, priority='LOWEST'),
        SimpleNamespace(ema_model=ema, priority='NORMAL')
    ]
    hook = adapter()
    hook.before_train(runner)
    runner.hooks.append(hook)
    m = hook.masks.mask('conv1.weight')
    with torch.no_grad():
        ema.conv1.weight[0] = 0.  # active positions with an average of 0
    new = m & (ema.conv1.weight == 0)
    assert new.any()
    hook.before_train_iter(runner, 0)
    with torch.no_grad():  # the EMA hook's update (momentum 0.5)
        for p, q in zip(ema.parameters(), runner.model.parameters()):
            p.mul_(0.5).add_(q + 1., alpha=0.5)
    hook.after_train_iter(runner, 0)
    w = runner.model.conv1.weight
    assert torch.equal(ema.conv1.weight[new], w[new])
    assert (ema.conv1.weight[~m] == 0).all()
    assert (ema.conv1.weight[m & ~new] != w[m & ~new]).all()
    assert (ema.fc.bias != runner.model.fc.bias).all()  # averaged, unmasked


def test_adapter_edges():
    """Argument errors at construction; nothing to save before training;
    a wrapped model is unwrapped; a wrapper without an accumulation count
    steps every iteration; an EMA hook at this hook's priority is refused
    by its class name; a resumed step count is whole optimizer steps."""
    from mmslak.engine.hooks import SparseTrainingHook
    for kwargs, name in ((dict(update_interval=0), 'update_interval'),
                         (dict(dense_threshold=0),
                          'dense_threshold'), (dict(scope='strips'), 'scope'),
                         (dict(prune_rate=0.001), 'prune_rate'),
                         (dict(exclude=[3]), 'exclude'), (dict(density='0.5'),
                                                          'density')):
        with pytest.raises((TypeError, ValueError)) as info:
            SparseTrainingHook(**kwargs)
        assert name in str(info.value)
    ckpt = {}
    adapter().before_save_checkpoint(fake_runner(), ckpt)
    assert ckpt == {}
    runner = fake_runner(torch.nn.DataParallel(TinyNet()))
    hook = adapter()
    hook.before_train(runner)
    assert hook.masks.names() == ['conv1.weight', 'fc.weight']
    runner = fake_runner()
    runner.optim_wrapper = SimpleNamespace(
        optimizer=torch.optim.SGD(runner.model.parameters(), lr=0.1))
    hook = adapter()
    hook.before_train(runner)
    assert 'every 3 optimizer steps at 4 samples per step' in \
        runner.logger.infos[0]
    assert "at this run's batch" in runner.logger.infos[0]

    class OtherEMAHook:
        priority = 55
        ema_model = TinyNet()

    runner = fake_runner()
    runner.hooks = [OtherEMAHook()]
    with pytest.raises(ValueError, match='OtherEMAHook'):
        adapter().before_train(runner)
    ckpt = {}
    first = fake_runner()
    hook = adapter()
    hook.before_train(first)
    hook.before_save_checkpoint(first, ckpt)
    resumed_runner = fake_runner(accumulation=2, it=3)
    resumed = adapter()
    resumed.after_load_checkpoint(resumed_runner, ckpt)
    resumed.before_train(resumed_runner)
    assert resumed.sparsity.num_steps == 1
    assert isinstance(resumed.sparsity.num_steps, int)
    # after training the optimizer steps no longer mask; before, nothing to
    # detach
    adapter().after_train(fake_runner())
    runner = fake_runner()
    hook = adapter()
    hook.before_train(runner)
    hook.after_train(runner)
    weight = runner.model.conv1.weight
    weight.grad = -torch.ones_like(weight)
    runner.optim_wrapper.optimizer.step()
    assert bool((weight > 0).all())  # the pruned zeros moved to 0.1
