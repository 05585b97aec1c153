"""SparseTrainingHook's methods driven directly on a tiny model with a fake
runner (fast enough for mutation testing). Every expected value comes from
a hand formula (the paper's / the reference's), never from mmslak.sparse."""
import itertools
import math
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict

from mmslak.engine.hooks import SparseTrainingHook
from mmslak.engine.hooks import sparse_training_hook as hook_module
from mmslak.engine.hooks.sparse_training_hook import format_layer_table

SHAPES = OrderedDict([('conv1.weight', (8, 3, 3, 3)),
                      ('dw.weight', (8, 1, 7, 7)),
                      ('conv2.weight', (16, 8, 1, 1)), ('fc.weight', (4, 16))])
SCOPE_NUMEL = 216 + 392 + 128 + 64  # 800
_RUNS = itertools.count()


class TinyNet(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.dw = nn.Conv2d(8, 8, 7, groups=8)
        self.conv2 = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 4)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():  # distinct magnitudes, none zero
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=g) + 0.01)


class Log:
    """Records what the hook logs."""

    def __init__(self):
        self.infos, self.warnings = [], []

    def info(self, msg, *args, **kwargs):
        self.infos.append(msg)

    def warning(self, msg, *args, **kwargs):
        self.warnings.append(msg)


def make_runner(model=None, accumulation=1, max_iters=20, seed=0, it=0):
    model = model if model is not None else TinyNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return SimpleNamespace(
        model=model,
        seed=seed,
        iter=it,
        max_iters=max_iters,
        logger=Log(),
        optim_wrapper=OptimWrapper(
            optimizer, accumulative_counts=accumulation),
        train_dataloader=SimpleNamespace(batch_size=4),
        auto_scale_lr=None,
        hooks=[],
        message_hub=MessageHub.get_instance(f'hook_units_{next(_RUNS)}'))


def make_hook(**kw):
    args = dict(density=0.5, init='uniform', update_interval=3, seed=5)
    args.update(kw)
    return SparseTrainingHook(**args)


def cosine(it, total, start, end):
    """The paper's cosine decay of the prune rate (float64)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * it / total))


def hand_counts(hook):
    return {n: int(hook.masks.mask(n).sum()) for n in hook.masks.names()}


# ----------------------------------------------------------------------
# initial masks
def test_uniform_init_counts_zeros_and_step_hook():
    runner = make_runner()
    hook = make_hook()
    hook.before_train(runner)
    # every layer at density 0.5 exactly (all numels are even)
    assert hand_counts(hook) == {
        n: math.prod(s) // 2
        for n, s in SHAPES.items()
    }
    assert hook.masks.names() == list(SHAPES)
    for n, p in runner.model.named_parameters():
        if n in SHAPES:
            m = hook.masks.mask(n)
            assert (p[~m] == 0).all() and (p[m] != 0).all(), n
    # the optimizer's post-step hook re-masks after a real step
    for p in runner.model.parameters():
        p.grad = -torch.ones_like(p)
    runner.optim_wrapper.optimizer.step()
    for n, p in runner.model.named_parameters():
        if n in SHAPES:
            m = hook.masks.mask(n)
            assert (p[~m] == 0).all() and (p[m] != 0).all(), n
    # the log says the scope's density and the model's active parameters
    numel = sum(p.numel() for p in runner.model.parameters())
    text = '\n'.join(runner.logger.infos)
    assert 'initial masks: 4 masked layers, 0 dense in scope' in text
    assert 'density 0.500000 (400/800)' in text
    assert f'model active parameters {numel - 400} of {numel}' in text
    assert 'conv1.weight' in text  # the per-layer table
    # after_train removes the step hooks: a step no longer re-masks
    hook.after_train(runner)
    assert hook._handles == []
    runner.optim_wrapper.optimizer.step()
    assert (runner.model.conv1.weight != 0).all()


def reference_erk(shapes, density):
    """The reference's ERK (sparse_core.py ``Masking.init``, 'ERK'): raise
    the largest-probability layer to dense until epsilon is valid."""
    dense = set()
    while True:
        divisor, rhs, raw = 0., 0., {}
        for n, s in shapes.items():
            n_param = float(math.prod(s))
            if n in dense:
                rhs -= n_param * (1 - density)
            else:
                rhs += n_param * density
                raw[n] = sum(s) / n_param
                divisor += raw[n] * n_param
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps <= 1:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= {n for n, r in raw.items() if r == top}


def test_erk_init_matches_the_reference_and_drops_dense_layers():
    runner = make_runner()
    hook = make_hook(init='erk')
    hook.before_train(runner)
    dens = reference_erk(SHAPES, 0.5)
    assert dens['fc.weight'] == dens['conv2.weight'] == 1.0
    # by hand: eps = (400 - 64 - 128) / (17 + 23) = 5.2; 5.2 * 17 = 88.4,
    # 5.2 * 23 = 119.6; 88 + 119 + 192 = 399, the larger remainder (dw)
    # gets the 400th weight
    assert dens['conv1.weight'] * 216 == pytest.approx(88.4, abs=1e-9)
    assert hand_counts(hook) == {'conv1.weight': 88, 'dw.weight': 120}
    assert list(hook.masks.dense) == ['conv2.weight', 'fc.weight']
    assert (runner.model.fc.weight != 0).all()
    assert 'made dense' in '\n'.join(runner.logger.infos)
    # without the threshold the all-True masks are still dense
    runner = make_runner()
    hook = make_hook(init='erk', dense_threshold=None)
    hook.before_train(runner)
    assert list(hook.masks.dense) == ['conv2.weight', 'fc.weight']


def test_masks_come_from_the_seeded_generator():
    masks = []
    for seed, runner_seed in ((5, 0), (5, 9), (None, 5), (None, None)):
        runner = make_runner(seed=runner_seed)
        hook = make_hook(seed=seed)
        hook.before_train(runner)
        masks.append(hook.masks.bool_masks())
    g = torch.Generator().manual_seed(5)
    want = torch.randperm(216, generator=g)[:108]
    flat = torch.zeros(216, dtype=torch.bool)
    flat[want] = True
    for m in masks[:3]:  # hook seed 5, else the runner's seed 5
        assert torch.equal(m['conv1.weight'].flatten(), flat)
    g0 = torch.Generator().manual_seed(0)  # no seed at all: 0
    flat0 = torch.zeros(216, dtype=torch.bool)
    flat0[torch.randperm(216, generator=g0)[:108]] = True
    assert torch.equal(masks[3]['conv1.weight'].flatten(), flat0)


# ----------------------------------------------------------------------
# schedule
@pytest.mark.parametrize('accumulation, base, per_update', [(1, None, 3),
                                                            (2, None, 6),
                                                            (1, 8, 6)])
def test_updates_happen_every_interval_and_not_at_the_end(
        accumulation, base, per_update):
    """update_interval 3 optimizer steps; with 2 accumulated iterations a
    step is 2 iterations; at base batch 8 and batch 4 it is 6 steps."""
    runner = make_runner(accumulation=accumulation, max_iters=18)
    runner.auto_scale_lr = None if base is None else dict(base_batch_size=8)
    hook = make_hook(growth='gradient', prune_rate=0.4, final_prune_rate=0.1)
    hook.before_train(runner)
    updated, captured = [], []
    for it in range(runner.max_iters):
        runner.iter = it
        hook.before_train_iter(runner, it)
        if hook._capture:
            captured.append(it + 1)
        for p in runner.model.parameters():
            p.grad = torch.randn(p.shape)
        before = hook.num_updates
        hook.after_train_iter(runner, it)
        if hook.num_updates > before:
            updated.append(it + 1)
        rate = runner.message_hub.get_scalar(
            'train/sparsity_prune_rate').current()
        assert rate == pytest.approx(cosine(it + 1, 18, 0.4, 0.1))
    want = [k for k in range(per_update, 18, per_update)]  # not 18 itself
    assert updated == want
    assert captured == want + ([18] if 18 % per_update == 0 else [])
    assert hook.num_updates == len(want)
    assert hook.current_prune_rate == pytest.approx(
        cosine(want[-1], 18, 0.4, 0.1))
    hub = runner.message_hub
    assert hub.get_scalar('train/sparsity_density').current() == 0.5


def test_static_hook_never_updates_and_logs_rate_zero():
    runner = make_runner(max_iters=6)
    hook = make_hook(dynamic=False, update_interval=1)
    hook.before_train(runner)
    before = hook.masks.bool_masks()
    for it in range(6):
        runner.iter = it
        hook.before_train_iter(runner, it)
        hook.after_train_iter(runner, it)
    assert hook.num_updates == 0
    after = hook.masks.bool_masks()
    assert all(torch.equal(before[n], after[n]) for n in SHAPES)
    hub = runner.message_hub
    assert hub.get_scalar('train/sparsity_prune_rate').current() == 0.
    assert hub.get_scalar('train/sparsity_explored').current() == 0.5


def test_one_accumulation_count_for_all_optimizers():
    model = TinyNet()
    convs = [p for n, p in model.named_parameters() if not n.startswith('fc')]
    runner = make_runner(model)
    runner.optim_wrapper = OptimWrapperDict(
        a=OptimWrapper(torch.optim.SGD(convs, lr=0.1), accumulative_counts=2),
        b=OptimWrapper(
            torch.optim.SGD(model.fc.parameters(), lr=0.1),
            accumulative_counts=2))
    hook = make_hook()
    hook.before_train(runner)
    assert hook._accumulation == 2 and hook._steps_per_update == 3
    # both optimizers re-mask their own weights
    assert set(hook._optimizer_of) == set(SHAPES)
    assert hook._optimizer_of['fc.weight'] is runner.optim_wrapper[
        'b'].optimizer
    assert hook._optimizer_of['dw.weight'] is runner.optim_wrapper[
        'a'].optimizer
    runner.optim_wrapper['b']._accumulative_counts = 1
    with pytest.raises(
            ValueError,
            match=r'^SparseTrainingHook needs one accumulative_counts for '
            r'all optimizers, got \[1, 2\]$'):
        make_hook().before_train(runner)


def test_weights_outside_every_optimizer_are_named():
    model = TinyNet()
    runner = make_runner(model)
    runner.optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.conv1.parameters(), lr=0.1))
    hook = make_hook()
    hook.before_train(runner)
    assert list(hook._optimizer_of) == ['conv1.weight']
    assert len(hook._handles) == 1
    (msg, ) = runner.logger.warnings
    assert "['conv2.weight', 'dw.weight', 'fc.weight']" in msg
    # registering again replaces the handles (one re-mask per step)
    hook._register_step_hooks(runner)
    assert len(hook._handles) == 1


# ----------------------------------------------------------------------
# prune and regrow
def test_update_prunes_the_scheduled_smallest_and_regrows_as_many():
    runner = make_runner(max_iters=20)
    hook = make_hook(prune_rate=0.5, final_prune_rate=0.05)
    hook.before_train(runner)
    model, opt = runner.model, runner.optim_wrapper.optimizer
    for p in model.parameters():
        p.grad = torch.randn(p.shape)
    opt.step()  # optimizer state to be reset at regrown positions
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    old = hook.masks.bool_masks()
    states = {
        n: opt.state[p]['exp_avg'].clone()
        for n, p in model.named_parameters()
    }
    hook.update(runner, 7)
    rate = cosine(7, 20, 0.5, 0.05)
    assert hook.current_prune_rate == pytest.approx(rate)
    assert hook.num_updates == 1
    for n in SHAPES:
        active = int(old[n].sum())
        num = math.ceil(rate * active)  # the reference's count
        new = hook.masks.mask(n)
        w = weights[n].double().flatten()
        order = sorted((i for i in range(w.numel()) if old[n].flatten()[i]),
                       key=lambda i: abs(float(w[i])))
        pruned = set(order[:num])
        kept = set(order[num:])
        newf = new.flatten()
        assert all(newf[i] for i in kept), n
        grown = [i for i in range(w.numel()) if newf[i] and i not in kept]
        assert len(grown) == num and int(new.sum()) == active, n
        assert all((not old[n].flatten()[i]) or i in pruned for i in grown)
        assert hook.last_update[n] == dict(pruned=num, regrown=num)
        p = model.get_parameter(n).detach().flatten()
        assert all(float(p[i]) == 0 for i in grown), n
        assert torch.equal(p[list(kept)], weights[n].flatten()[list(kept)])
        assert torch.equal(hook.masks.explored[n], old[n] | new)
        state = opt.state[model.get_parameter(n)]['exp_avg'].flatten()
        assert all(float(state[i]) == 0 for i in grown), n
        others = [i for i in range(w.numel()) if i not in grown]
        assert torch.equal(state[others], states[n].flatten()[others])
    text = runner.logger.infos[-2]
    assert f'update 1 at iter 7, prune rate {rate:.4f}' in text


def test_gradient_growth_regrows_the_largest_captured_gradients():
    runner = make_runner(max_iters=20)
    hook = make_hook(growth='gradient', prune_rate=0.3, final_prune_rate=0.)
    hook.before_train(runner)
    model = runner.model
    runner.iter = 2  # the step of iteration 3 ends an interval
    hook.before_train_iter(runner, 2)
    assert hook._capture
    grads = {n: torch.randn(p.shape) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    runner.optim_wrapper.optimizer.step()  # captured here
    for p in model.parameters():
        p.grad = None  # as zero_grad would
    old = hook.masks.bool_masks()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    hook.after_train_iter(runner, 2)
    assert hook.num_updates == 1 and hook._grads == {}
    assert not hook._capture
    rate = cosine(3, 20, 0.3, 0.)
    for n in SHAPES:
        num = math.ceil(rate * int(old[n].sum()))
        w = weights[n].flatten().abs()
        w[~old[n].flatten()] = math.inf
        pruned = torch.zeros_like(old[n].flatten())
        pruned[torch.sort(w, stable=True).indices[:num]] = True
        after_prune = old[n].flatten() & ~pruned
        g = grads[n].flatten().abs()
        g[after_prune] = -1.
        want = torch.zeros_like(pruned)
        want[torch.sort(g, descending=True, stable=True).indices[:num]] = True
        assert torch.equal(hook.masks.mask(n).flatten(), after_prune | want)
    assert runner.logger.warnings == []


def test_gradient_growth_without_a_gradient_regrows_at_random():
    runner = make_runner(max_iters=20)
    hook = make_hook(growth='gradient', prune_rate=0.3)
    hook.before_train(runner)
    twin_runner = make_runner(max_iters=20)
    twin = make_hook(growth='random', prune_rate=0.3)
    twin.before_train(twin_runner)
    hook.update(runner, 3)  # no .grad anywhere
    twin.update(twin_runner, 3)
    assert 'regrowing at random' in runner.logger.warnings[0]
    for n in SHAPES:
        assert torch.equal(hook.masks.mask(n), twin.masks.mask(n))


# ----------------------------------------------------------------------
# checkpoints and resume
def _copy_of(model):
    other = TinyNet()
    other.load_state_dict(model.state_dict())
    return other


def test_save_and_resume_continue_exactly():
    runner = make_runner(max_iters=20)
    hook = make_hook(init='erk', prune_rate=0.5)
    hook.before_train(runner)
    hook.update(runner, 6)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    state = ckpt['sparsity']
    assert set(state) == {
        'version', 'mask_format', 'shapes', 'masks', 'explored', 'dense',
        'num_updates', 'prune_rate', 'rng_state', 'density', 'init', 'scope',
        'dynamic'
    }
    assert state['version'] == 2 and state['mask_format'] == 'packbits'
    assert state['dense'] == ['conv2.weight', 'fc.weight']
    assert (state['num_updates'], state['density'], state['init'],
            state['scope'], state['dynamic']) == (1, 0.5, 'erk', 'all', True)
    assert state['prune_rate'] == pytest.approx(cosine(6, 20, 0.5, 0.005))
    assert dict(state['shapes']) == {
        'conv1.weight': [8, 3, 3, 3],
        'dw.weight': [8, 1, 7, 7]
    }
    # numpy's packbits order, by hand: first element = most significant
    m = hook.masks.mask('conv1.weight').flatten()[:8].tolist()
    assert int(state['masks']['conv1.weight'][0]) == sum(
        b << (7 - i) for i, b in enumerate(m))

    # a fresh process: new model (same weights), other seed
    resumed_runner = make_runner(_copy_of(runner.model), max_iters=20, it=6)
    resumed = make_hook(init='erk', prune_rate=0.5, seed=99)
    resumed.after_load_checkpoint(resumed_runner, ckpt)
    resumed.before_train(resumed_runner)
    assert resumed.num_updates == 1
    assert resumed.current_prune_rate == hook.current_prune_rate
    assert resumed.masks.names() == hook.masks.names()
    for n in hook.masks.names():
        assert torch.equal(resumed.masks.mask(n), hook.masks.mask(n))
        assert torch.equal(resumed.masks.explored[n], hook.masks.explored[n])
        assert resumed.masks.explored[n].dtype == torch.bool
        assert not torch.equal(hook.masks.explored[n], hook.masks.mask(n))
    assert any('SparseTrainingHook resumed' in m
               for m in resumed_runner.logger.infos)
    # the next update draws the same regrowth (the generator was restored)
    hook.update(runner, 9)
    resumed.update(resumed_runner, 9)
    for n in hook.masks.names():
        assert torch.equal(resumed.masks.mask(n), hook.masks.mask(n))


def test_resume_refuses_masks_outside_the_scope():
    runner = make_runner(max_iters=20)
    hook = make_hook()
    hook.before_train(runner)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    resumed_runner = make_runner(it=4)
    resumed = make_hook(exclude=['^fc'])
    resumed.after_load_checkpoint(resumed_runner, ckpt)
    with pytest.raises(KeyError) as info:
        resumed.before_train(resumed_runner)
    assert info.value.args[0] == (
        'the resumed checkpoint has masks for weights outside '
        "scope='all': ['fc.weight']")


def test_load_from_redraws_masks_unless_init_checkpoint():
    runner = make_runner()
    hook = make_hook(seed=1)
    hook.before_train(runner)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    saved = hook.masks.bool_masks()
    # iteration 0: load_from, not resume
    other_runner = make_runner(_copy_of(runner.model))
    other = make_hook(seed=2)
    other.after_load_checkpoint(other_runner, ckpt)
    other.before_train(other_runner)
    assert other_runner.logger.warnings == [
        'SparseTrainingHook: the loaded checkpoint carries masks, but '
        "init='uniform' draws new ones (its weights are kept, its zero "
        "pattern is not); set init='checkpoint' to keep its masks"
    ]
    assert other._loaded_state is None
    assert not torch.equal(other.masks.mask('dw.weight'), saved['dw.weight'])
    kept_runner = make_runner(TinyNet())
    kept = make_hook(init='checkpoint', dynamic=False)
    kept.after_load_checkpoint(kept_runner, ckpt)
    kept.before_train(kept_runner)
    assert kept_runner.logger.warnings == []
    for n in SHAPES:
        assert torch.equal(kept.masks.mask(n), saved[n])
    assert kept.num_updates == 0
    # a checkpoint without sparsity state loads nothing
    kept.after_load_checkpoint(kept_runner, {'sparsity': {'x': 1}})
    assert kept._loaded_state is None


def test_checkpoint_init_from_a_file_with_renamed_prefixes(tmp_path):
    model = TinyNet()
    with torch.no_grad():
        model.conv1.weight[0] = 0  # 27 zeros
        model.fc.weight[:, :4] = 0  # 16 zeros
    weights = {f'net.{k}': v for k, v in model.state_dict().items()}
    weights['net.extra.weight'] = torch.zeros(2, 2)
    path = str(tmp_path / 'ckpt.pth')
    torch.save(dict(state_dict=weights), path)
    runner = make_runner()
    hook = make_hook(
        init='checkpoint',
        mask_checkpoint=path,
        mask_prefix_map={
            'other.': 'x.',
            'net.': ''
        })
    hook.before_train(runner)
    assert hook.masks.names() == ['conv1.weight', 'fc.weight']
    assert hand_counts(hook) == {'conv1.weight': 216 - 27, 'fc.weight': 48}
    assert list(hook.masks.dense) == ['dw.weight', 'conv2.weight']
    assert (runner.model.conv1.weight[0] == 0).all()
    assert f'masks from {path}: 4 used, 1 not in the model/scope, 0' in (
        runner.logger.infos[0])
    bad = {'net.conv1.weight': torch.ones(8, 3, 3, 1)}
    torch.save(dict(state_dict=bad), path)
    with pytest.raises(ValueError, match=r'conv1.weight.*\(8, 3, 3, 1\)'):
        hook.before_train(make_runner())


def test_checkpoint_init_from_the_zeros_of_the_weights():
    model = TinyNet()
    with torch.no_grad():
        model.dw.weight[:2] = 0
    runner = make_runner(model)
    hook = make_hook(init='checkpoint', dynamic=False)
    hook.before_train(runner)
    assert hand_counts(hook) == {'dw.weight': 392 - 98}
    assert 'the zeros of the current weights' in runner.logger.infos[0]
    assert runner.logger.warnings == []
    dense_runner = make_runner()
    make_hook(init='checkpoint').before_train(dense_runner)
    assert 'found no zero weight' in dense_runner.logger.warnings[0]


# ----------------------------------------------------------------------
# EMA, several ranks, logging
def test_ema_weights_are_masked_before_validation_and_saving():
    runner = make_runner()
    hook = make_hook()
    hook.before_train(runner)
    ema = SimpleNamespace(module=_copy_of(TinyNet()))
    with torch.no_grad():
        for p in ema.module.parameters():
            p.fill_(2.)
        ema.module.fc.weight = nn.Parameter(torch.full((4, 4), 2.))
    runner.hooks = [
        object(),
        SimpleNamespace(ema_model=nn.Module()),
        SimpleNamespace(ema_model=ema.module)
    ]
    hook.before_val_epoch(runner)
    for n in ('conv1.weight', 'dw.weight', 'conv2.weight'):
        p = ema.module.get_parameter(n)
        m = hook.masks.mask(n)
        assert (p[~m] == 0).all() and (p[m] == 2).all(), n
    assert (ema.module.fc.weight == 2).all()  # other shape: left alone
    assert (ema.module.conv1.bias == 2).all()
    with torch.no_grad():
        ema.module.conv1.weight.fill_(3.)
    # an EMA wrapper keeps the averaged model under .module
    runner.hooks = [SimpleNamespace(ema_model=WrappedEMA(ema.module))]
    hook.before_save_checkpoint(runner, {})
    m = hook.masks.mask('conv1.weight')
    assert (ema.module.conv1.weight[~m] == 0).all()
    with torch.no_grad():
        ema.module.conv1.weight.fill_(4.)
    hook.after_train(runner)
    assert (ema.module.conv1.weight[~m] == 0).all()


class WrappedEMA(nn.Module):

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.extra = nn.Parameter(torch.ones(1))


def test_two_ranks_get_rank_zeros_masks(monkeypatch):
    """Rank 0's decisions travel in one uint8 message (0 inactive, 1 kept,
    2 regrown); a rank that receives it ends with the same masks."""
    sent, incoming = [], []

    def fake_broadcast(tensor, src):
        assert src == 0 and tensor.dtype == torch.uint8
        if incoming:  # the receiving rank
            tensor.copy_(incoming.pop(0))
        else:
            sent.append(tensor.clone())

    runner = make_runner(max_iters=20)
    single = make_hook(prune_rate=0.5)
    single.before_train(runner)
    single.update(runner, 3)
    monkeypatch.setattr(hook_module, 'get_world_size', lambda: 2)
    monkeypatch.setattr(hook_module, 'broadcast', fake_broadcast)
    rank0_runner = make_runner(max_iters=20)
    rank0 = make_hook(prune_rate=0.5)
    rank0.before_train(rank0_runner)
    rank0.update(rank0_runner, 3)
    message, codes = sent
    assert message.numel() == codes.numel() == SCOPE_NUMEL
    assert int(message.sum()) == 400
    monkeypatch.setattr(hook_module, 'get_rank', lambda: 1)
    rank1_runner = make_runner(max_iters=20)
    rank1 = make_hook(prune_rate=0.5, seed=77)
    incoming.extend([message, codes])  # rank 0's masks, then its update
    rank1.before_train(rank1_runner)
    rank1.update(rank1_runner, 3)
    assert incoming == [] and len(sent) == 2
    offset = 0
    for n in SHAPES:
        size = math.prod(SHAPES[n])
        c = codes[offset:offset + size].view(SHAPES[n])
        offset += size
        assert int((c == 2).sum()) == single.last_update[n]['regrown'] > 0
        for h in (rank0, rank1):
            assert torch.equal(h.masks.mask(n), single.masks.mask(n)), n
            assert torch.equal(h.masks.mask(n), c > 0), n
            assert h.last_update[n] == single.last_update[n]
            assert torch.equal(h.masks.explored[n], single.masks.explored[n])
        # regrown weights start at 0 on the receiving rank too
        w = rank1_runner.model.get_parameter(n)
        assert (w[c == 2] == 0).all() and (w[c == 1] != 0).all()


def test_layer_table_lines():
    table = format_layer_table(
        OrderedDict([('a.weight', (3, 4, 0.75)), ('b', (1, 10, 0.1))]))
    # name padded to the longest (8), counts right-aligned in 10
    assert table.split('\n') == [
        'layer' + ' ' * 9 + 'active' + ' ' * 7 + 'numel  density',
        'a.weight' + ' ' * 11 + '3' + ' ' * 11 + '4  0.7500',
        'b' + ' ' * 18 + '1' + ' ' * 10 + '10  0.1000',
    ]
    assert format_layer_table({
        'ab': (1, 2, 0.5)
    }).split('\n')[0] == ('layer  ' + '    active       numel  density')
