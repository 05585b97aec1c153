"""SparseTrainingHook in real (tiny) mmengine Runner trainings."""
import os
import shutil

import pytest
import torch
from child_process import run_in_checkout
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper

from mmslak.sparse import (cosine_prune_rate, masks_from_checkpoint,
                           sparsity_table)
from mmslak.sparse.prune_grow import num_to_prune


class Checker(Hook):
    """After every iteration: masked weights are exactly zero, per-layer
    active counts are those of the first iteration, the total is the target
    density (to one weight); at each update pruned == regrown == the
    scheduled count and the pruned weights were the smallest."""

    priority = 'LOW'  # after SparseTrainingHook (35)

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
        if hook.num_updates > self.updates:
            self.updates = hook.num_updates
            rate = cosine_prune_rate(runner.iter + 1, runner.max_iters,
                                     self.p0)
            for name, rec in hook.last_update.items():
                want = num_to_prune(self.counts[name], rate)
                assert rec['pruned'] == rec['regrown'] == want, name
            if self.snapshot is not None:
                self._check_smallest_pruned(masks)
        self.iters += 1

    def _check_smallest_pruned(self, masks):
        before, old_masks = self.snapshot.weights, self.snapshot.masks
        for name in masks.names():
            w0, w1 = before[name], masks.params[name].detach()
            old, new = old_masks[name], masks.mask(name)
            kept = old & new & (w1 == w0) & (w0 != 0)
            pruned = old & ~kept
            if pruned.any() and kept.any():
                assert w0[pruned].abs().max() <= w0[kept].abs().min(), name
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
    assert checker.iters == 8 and checker.updates == hook.num_updates == 3
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
    assert sparse_hook(runner).num_updates == 1
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
    assert hook.num_updates == 2 and checker.iters == 6
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
    assert hook.num_updates == 2  # after iterations 3 and 6
    assert hook.current_prune_rate == pytest.approx(
        cosine_prune_rate(6, 8, 0.5))


@pytest.fixture(scope='module')
def sparse_run(tmp_path_factory, build_runner, final_state, resume_hook):
    """12 uninterrupted iterations, checkpoint at 6 (updates every 2)."""
    work = tmp_path_factory.mktemp('full')
    runner = build_runner(
        work, dict(resume_hook), max_iters=12, ckpt_interval=6, name='full')
    runner.train()
    return work, final_state(runner)


def test_resume_in_new_process_is_exact(sparse_run, tmp_path,
                                        tiny_child_script):
    work, full = sparse_run
    ckpt = str(tmp_path / 'iter_6.pth')
    shutil.copy(os.path.join(work, 'iter_6.pth'), ckpt)
    saved = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert saved['sparsity']['num_updates'] == 3
    out = str(tmp_path / 'resumed.pth')
    proc = run_in_checkout(
        tiny_child_script,
        'resume',
        str(tmp_path / 'work'),
        ckpt,
        out,
        '12',
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = torch.load(out, map_location='cpu', weights_only=True)
    assert resumed['num_updates'] == full['num_updates'] == 5
    for key in ('weights', 'masks', 'explored'):
        assert resumed[key].keys() == full[key].keys()
        for name in full[key]:
            assert torch.equal(resumed[key][name], full[key][name]), name


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
    assert hook.num_updates == 0
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


def test_ddp_two_processes_identical_masks(tmp_path, tiny_child_script):
    out = tmp_path / 'out'
    out.mkdir()
    proc = run_in_checkout(
        tiny_child_script, 'ddp', tmp_path / 'work', out, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(out / '0.pth', weights_only=True)
    r1 = torch.load(out / '1.pth', weights_only=True)
    assert r0['num_updates'] == r1['num_updates'] == 3
    assert r0['masks'].keys() == r1['masks'].keys()
    for n in r0['masks']:
        assert torch.equal(r0['masks'][n], r1['masks'][n]), n
        assert torch.equal(r0['explored'][n], r1['explored'][n]), n
    for n in r0['weights']:
        if 'running_' in n or 'num_batches' in n:
            continue  # BN statistics are per rank (broadcast_buffers=False)
        assert torch.equal(r0['weights'][n], r1['weights'][n]), n
