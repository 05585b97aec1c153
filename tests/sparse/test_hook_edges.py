"""SparseTrainingHook without a Runner, part 2: the SNIP initialisation,
argument limits, hooks called before any mask exists, old (version 1)
sparsity states, partial gradients. Hand oracles only."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import InfiniteSampler
from mmengine.model import BaseModel
from test_hook_units import SHAPES, Log, TinyNet, make_hook, make_runner
from torch.utils.data import DataLoader

from mmslak.engine.hooks import SparseTrainingHook


class TinyClassifier(BaseModel):
    """TinyNet as an mmengine model (dict batches of inputs and labels)."""

    def __init__(self):
        super().__init__()
        self.net = TinyNet()

    def forward(self, inputs, labels=None, mode='tensor'):
        n = self.net
        x = n.conv2(n.dw(n.conv1(inputs))).mean((2, 3))
        logits = n.fc(x)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


def loader(shuffle=True, n=8, batch_size=2):
    g = torch.Generator().manual_seed(3)
    data = [
        dict(inputs=torch.randn(3, 9, 9, generator=g), labels=i % 4)
        for i in range(n)
    ]
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=InfiniteSampler(data, shuffle=shuffle, seed=1))


def hand_snip_scores(model, batches):
    """|w * dL/dw| summed over the batches, float64, by autograd on a
    float64 copy of the model."""
    net = TinyClassifier().double()
    net.load_state_dict(model.state_dict())
    total = {n: torch.zeros(s, dtype=torch.float64) for n, s in SHAPES.items()}
    for batch in batches:
        x = batch['inputs'].double()
        loss = F.cross_entropy(net(x), batch['labels'])
        params = [net.net.get_parameter(n) for n in SHAPES]
        grads = torch.autograd.grad(loss, params)
        for n, p, g in zip(SHAPES, params, grads):
            total[n] += (p.detach() * g).abs()
    return total


@pytest.mark.parametrize('snip_random', [False, True])
def test_snip_init_keeps_the_global_top_scores(snip_random):
    model = TinyClassifier()
    data = loader()
    runner = make_runner(model)
    runner.train_dataloader = data
    hook = make_hook(
        init='snip',
        snip_batches=2,
        snip_random=snip_random,
        dense_threshold=None,
        seed=4)
    hook.before_train(runner)
    # the first two batches the training loop sees (same sampler seed)
    it = iter(loader())
    batches = [next(it), next(it)]
    # SNIP drew from a fresh index generator: training starts with them
    train = iter(data)
    for want in batches:
        assert torch.equal(next(train)['inputs'], want['inputs'])
    scores = hand_snip_scores(TinyClassifier(), batches)
    flat = torch.cat([scores[n].flatten() for n in SHAPES])
    top = torch.sort(flat, descending=True, stable=True).indices[:400]
    chosen = torch.zeros(800, dtype=torch.bool)
    chosen[top] = True
    start = 0
    for n, shape in SHAPES.items():
        size = math.prod(shape)
        want = chosen[start:start + size].view(shape)
        start += size
        name = 'net.' + n
        if int(want.sum()) == size:  # all kept: dense
            assert name not in hook.masks, n
            continue
        got = hook.masks.mask(name)
        assert int(got.sum()) == int(want.sum()), n
        if not snip_random:
            assert torch.equal(got, want), n
    if snip_random:  # random positions at SNIP's count, first layer first
        name = 'net.conv1.weight'
        count = int(hook.masks.mask(name).sum())
        g = torch.Generator().manual_seed(4)
        flat = torch.zeros(216, dtype=torch.bool)
        flat[torch.randperm(216, generator=g)[:count]] = True
        assert torch.equal(hook.masks.mask(name).flatten(), flat)


def test_snip_batches_from_a_plain_loader():
    data = DataLoader(list(range(10)), batch_size=3)
    hook = make_hook(init='snip', snip_batches=2)
    assert [b.tolist() for b in hook._snip_batches(data)] == [[0, 1, 2],
                                                              [3, 4, 5]]
    inf = loader()
    shared = inf.sampler.indices
    hook._snip_batches(inf)
    assert inf.sampler.indices is shared  # put back


@pytest.mark.parametrize('kwargs', [
    dict(density=1.0, prune_rate=1.0, final_prune_rate=1.0),
    dict(prune_rate=0.3, final_prune_rate=0.),
    dict(dynamic=False, update_interval=0),
    dict(update_interval=1, snip_batches=1),
    dict(dense_threshold=1.0),
    dict(dense_threshold=None),
])
def test_arguments_at_their_limits_are_accepted(kwargs):
    hook = SparseTrainingHook(**kwargs)
    for key, value in kwargs.items():
        assert getattr(hook, key) == value


@pytest.mark.parametrize('kwargs, match', [
    (dict(init='magic'), r"init must be one of \('snip', 'erk', 'uniform', "
     r"'checkpoint'\), got 'magic'"),
    (dict(growth='none'), r"growth must be one of \('random', 'gradient'\), "
     r"got 'none'"),
    (dict(update_interval=0), 'update_interval must be a positive int, '
     'got 0'),
    (dict(update_interval=2.0), 'update_interval must be a positive int, '
     'got 2.0'),
    (dict(prune_rate=0.2, final_prune_rate=0.3),
     'need 0 <= final_prune_rate <= prune_rate <= 1, got 0.3, 0.2'),
    (dict(prune_rate=1.5), 'got 0.005, 1.5'),
    (dict(final_prune_rate=-0.1), 'got -0.1, 0.5'),
    (dict(snip_batches=0), 'snip_batches must be >= 1, got 0'),
    (dict(dense_threshold=0.), r'dense_threshold must be in \(0, 1\] or '
     'None, got 0.0'),
    (dict(dense_threshold=1.01), 'got 1.01'),
])
def test_argument_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseTrainingHook(**kwargs)


def test_stored_arguments():
    hook = SparseTrainingHook(
        exclude='^fc',
        mask_checkpoint='x.pth',
        mask_prefix_map={'': 'backbone.'},
        erk_power_scale=0.5,
        log_per_layer=False)
    assert hook.exclude == ['^fc'] and hook.mask_prefix_map == {
        '': 'backbone.'
    }
    assert (hook.mask_checkpoint, hook.erk_power_scale, hook.seed,
            hook.scope) == ('x.pth', 0.5, None, 'all')
    default = SparseTrainingHook()
    assert default.mask_prefix_map == {} and default.exclude == []
    assert (default.density, default.init, default.update_interval,
            default.prune_rate, default.final_prune_rate, default.growth,
            default.snip_batches, default.dense_threshold,
            default.snip_random) == (0.6, 'snip', 2000, 0.5, 0.005, 'random',
                                     1, 0.99, True)
    assert default.masks is None and default.num_updates == 0
    assert default.current_prune_rate == 0.5 and not default._capture
    assert default._accumulation == 1 and default._steps_per_update == 2000


def test_hooks_before_any_mask_do_nothing():
    runner = make_runner()
    hook = make_hook()
    ema = TinyNet()
    runner.hooks = [SimpleNamespace(ema_model=ema)]
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    hook.before_val_epoch(runner)
    hook.after_train_iter(runner, 0)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt == {}
    assert all(torch.equal(v, before[k]) for k, v in ema.state_dict().items())
    assert 'train/sparsity_density' not in runner.message_hub.log_scalars
    for bad in ({}, {'sparsity': None}, {'sparsity': 'x'}):
        hook.after_load_checkpoint(runner, bad)
        assert hook._loaded_state is None


def test_wrapper_without_accumulation_and_the_schedule_message():
    runner = make_runner()
    opt = torch.optim.SGD(runner.model.parameters(), lr=0.1)
    runner.optim_wrapper = SimpleNamespace(optimizer=opt)  # no counts
    runner.auto_scale_lr = dict(base_batch_size=8)
    hook = make_hook(update_interval=3, log_per_layer=False)
    hook.before_train(runner)
    assert hook._accumulation == 1 and hook._steps_per_update == 6
    assert runner.logger.infos[0] == (
        'SparseTrainingHook: update_interval 3 optimizer steps at 8 samples'
        ' per step -> every 6 optimizer steps at 4 samples per step (1 GPUs'
        ' x 4 x 1 accumulated), i.e. every 6 iterations and 24 samples')
    assert len(runner.logger.infos) == 2  # no per-layer table
    runner = make_runner(accumulation=2)
    hook = make_hook(update_interval=3, log_per_layer=False)
    hook.before_train(runner)
    assert runner.logger.infos[0].endswith(
        "at this run's batch -> every 3 optimizer steps at 8 samples per "
        'step (1 GPUs x 4 x 2 accumulated), i.e. every 6 iterations and 24 '
        'samples')


def test_a_version_1_state_resumes_with_defaults():
    """Bool masks, no schedule state: the defaults, explored = masks."""
    model = TinyNet()
    half = torch.arange(392).view(8, 1, 7, 7) % 2 == 0
    state = dict(
        masks={
            'conv1.weight': torch.ones(8, 3, 3, 3, dtype=torch.bool),
            'dw.weight': half
        },
        explored={
            'conv1.weight':
            torch.ones(8, 3, 3, 3, dtype=torch.uint8),
            'dw.weight': (torch.arange(392).view(8, 1, 7, 7) % 4
                          != 3).to(torch.uint8)
        })
    runner = make_runner(model, it=1)  # saved after one iteration
    hook = make_hook(prune_rate=0.4, seed=8)
    hook.after_load_checkpoint(runner, {'sparsity': state})
    hook.before_train(runner)
    assert hook.masks.names() == ['dw.weight']  # conv1 all True: dense
    assert hook.num_updates == 0 and hook.current_prune_rate == 0.4
    explored = hook.masks.explored['dw.weight']
    assert explored.dtype == torch.bool and int(explored.sum()) == 294
    # the generator: seeded by the hook's seed
    g = torch.Generator().manual_seed(8)
    assert torch.equal(hook._generator.get_state(), g.get_state())


def test_iteration_after_zero_without_state_draws_new_masks():
    runner = make_runner(it=5)
    hook = make_hook()
    hook.before_train(runner)
    assert {
        n: int(hook.masks.mask(n).sum())
        for n in hook.masks.names()
    } == {
        n: math.prod(s) // 2
        for n, s in SHAPES.items()
    }
    assert runner.logger.warnings == []


def test_partial_gradients_fall_back_to_random_growth():
    runner = make_runner(max_iters=20)
    hook = make_hook(growth='gradient', prune_rate=0.3)
    hook.before_train(runner)
    hook._capture = True
    for n, p in runner.model.named_parameters():
        p.grad = None if n == 'fc.weight' else torch.randn(p.shape)
    runner.optim_wrapper.optimizer.step()
    assert set(hook._grads) == set(SHAPES) - {'fc.weight'}
    hook.update(runner, 3)
    assert 'regrowing at random' in runner.logger.warnings[0]
    assert hook.num_updates == 1


def test_the_log_counts_every_parameter():
    runner = make_runner()
    runner.logger = Log()
    hook = make_hook(init='erk', log_per_layer=True)
    hook.before_train(runner)
    numel = sum(p.numel() for p in runner.model.parameters())
    # ERK at 0.5 (see test_hook_units): conv1 88 + dw 120 + dense 192
    assert runner.logger.infos[-2] == (
        'SparseTrainingHook initial masks: 2 masked layers, 2 dense in '
        f'scope, density 0.500000 (400/800), explored 0.5000, model active '
        f'parameters {numel - 400} of {numel}')
    assert runner.logger.infos[0] == (
        'SparseTrainingHook: 2 layers with initial density >= 0.99 made '
        "dense: ['conv2.weight', 'fc.weight']")
    assert runner.logger.infos[-1].split('\n')[1:] == [
        'layer         ' + '    active       numel  density',
        'conv1.weight          88         216  0.4074',
        'dw.weight            120         392  0.3061',
    ]


def test_resume_names_at_most_five_unknown_masks():
    ghosts = {
        f'ghost{i}.weight': torch.ones(2, dtype=torch.bool)
        for i in range(7)
    }
    runner = make_runner(it=3)
    hook = make_hook()
    hook.after_load_checkpoint(runner, {'sparsity': {'masks': ghosts}})
    with pytest.raises(KeyError) as info:
        hook.before_train(runner)
    assert info.value.args[0] == (
        'the resumed checkpoint has masks for weights outside '
        f"scope='all': {sorted(ghosts)[:5]}")


def test_snip_may_empty_a_layer_uniform_may_not():
    model = TinyClassifier()
    with torch.no_grad():
        model.net.conv2.weight.mul_(1e-9)  # most SNIP scores ~0
    runner = make_runner(model)
    runner.train_dataloader = loader()
    hook = make_hook(init='snip', density=0.1, dense_threshold=None)
    hook.before_train(runner)  # a warning, no error
    empty = [n for n in hook.masks.names() if not hook.masks.mask(n).any()]
    assert empty  # kept (SNIP's choice), not refused
    assert hook.masks.stats()['active'] == 80  # dense layers included
    with pytest.raises(ValueError) as info:
        make_hook(density=0.001).before_train(make_runner())
    assert str(info.value).startswith(
        'SparseTrainingHook: density=0.001 leaves 3 of 4 layers with no '
        'active weight')


def test_broadcast_buffers_live_on_the_weights_device(monkeypatch):
    from mmslak.engine.hooks import sparse_training_hook as module
    seen = []
    monkeypatch.setattr(module, 'get_world_size', lambda: 2)
    monkeypatch.setattr(module, 'broadcast', lambda t, src: seen.append(
        (t.device, t.dtype)))
    params = {
        'a': torch.empty(2, 3, device='meta'),
        'b': torch.empty(4, device='meta')
    }
    codes = [
        torch.ones(2, 3, dtype=torch.uint8),
        torch.zeros(4, dtype=torch.uint8)
    ]
    hook = make_hook()
    out = hook._broadcast_codes(codes, params)
    assert [c.shape for c in out] == [(2, 3), (4, )]
    assert all(c.device.type == 'meta' for c in out)
    monkeypatch.setattr(module, 'get_rank', lambda: 1)
    out = hook._broadcast_codes(None, params)
    assert all(c.device.type == 'meta' for c in out)
    assert seen == [(torch.device('meta'), torch.uint8)] * 2


def test_fresh_hook_bookkeeping_is_empty():
    hook = make_hook()
    assert hook.last_update == {} and hook._optimizer_of == {}
    assert hook._grads == {} and hook._handles == []


def test_a_wrapped_model_is_unwrapped(monkeypatch):
    from mmslak.engine.hooks import sparse_training_hook as module

    class Wrapper(torch.nn.Module):

        def __init__(self, module):
            super().__init__()
            self.module = module

    monkeypatch.setattr(module, 'is_model_wrapper',
                        lambda m: isinstance(m, Wrapper))
    runner = make_runner()
    runner.model = Wrapper(runner.model)
    hook = make_hook()
    hook.before_train(runner)
    assert hook.masks.names() == list(SHAPES)  # the inner model's names


def test_a_layer_exactly_at_the_threshold_is_made_dense():
    masks = dict(a=torch.arange(100) < 50, b=torch.arange(100) < 49)
    kept = make_hook(
        dense_threshold=0.5)._drop_near_dense(make_runner(), masks)
    assert list(kept) == ['b']


def test_batch_size_from_the_batch_sampler_or_a_clear_error():
    runner = make_runner(accumulation=2)
    runner.train_dataloader = SimpleNamespace(
        batch_size=None, batch_sampler=SimpleNamespace(batch_size=2))
    runner.auto_scale_lr = dict(base_batch_size=16)
    hook = make_hook(update_interval=3)
    hook._set_schedule(runner)
    assert hook._steps_per_update == 12  # round(3 * 16 / (1 * 2 * 2))
    runner.train_dataloader = SimpleNamespace(
        batch_size=None, batch_sampler=None)
    with pytest.raises(ValueError) as info:
        hook._set_schedule(runner)
    assert str(info.value) == ('SparseTrainingHook cannot tell the batch '
                               'size per GPU of the training dataloader')


@pytest.mark.parametrize('form', ['batch_sampler', 'no_batching'])
def test_snip_keeps_the_stream_of_an_infinite_sampler_in_any_loader(form):
    from torch.utils.data import BatchSampler
    data = [torch.full((1, ), float(i)) for i in range(8)]

    def make():
        sampler = InfiniteSampler(data, shuffle=True, seed=2)
        if form == 'batch_sampler':  # loader.sampler is then sequential
            return DataLoader(
                data, batch_sampler=BatchSampler(sampler, 2, False))
        return DataLoader(data, batch_size=None, sampler=sampler)

    loader_ = make()
    hook = make_hook(init='snip', snip_batches=2)
    drawn = hook._snip_batches(loader_)
    it, fresh = iter(loader_), iter(make())
    for batch in drawn:
        want = next(fresh)
        assert torch.equal(batch, want) and torch.equal(next(it), want)


def test_checkpoint_init_messages(tmp_path):
    runner = make_runner()
    hook = make_hook()
    hook.before_train(runner)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    kept_runner = make_runner()
    kept = make_hook(init='checkpoint', dynamic=False)
    kept.after_load_checkpoint(kept_runner, ckpt)
    kept.before_train(kept_runner)
    assert kept_runner.logger.infos[0] == (
        'SparseTrainingHook: masks from the loaded checkpoint: 4 used, 0 not '
        'in the model/scope, 0 sparse-scope weights without a mask stay '
        'dense')
    model = TinyNet()
    with torch.no_grad():
        model.dw.weight[:2] = 0
    zeros_runner = make_runner(model)
    make_hook(init='checkpoint', dynamic=False).before_train(zeros_runner)
    assert zeros_runner.logger.infos[0] == (
        'SparseTrainingHook: masks from the zeros of the current weights: 4 '
        'used, 0 not in the model/scope, 0 sparse-scope weights without a '
        'mask stay dense')
    dense_runner = make_runner()
    make_hook(init='checkpoint').before_train(dense_runner)
    assert dense_runner.logger.warnings == [
        'SparseTrainingHook: init="checkpoint" found no zero weight; '
        'training dense'
    ]
    path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={'other.weight': torch.ones(2, 2)}), path)
    with pytest.raises(ValueError) as info:
        make_hook(
            init='checkpoint',
            mask_checkpoint=path).before_train(make_runner())
    assert (f"none of the 1 masks from {path} matches a weight of the model "
            "in the sparse scope (checkpoint: ['other.weight'], model: "
            "['conv1.weight', 'dw.weight', 'conv2.weight'])") in str(
                info.value)


def test_mask_checkpoint_without_any_weight_is_refused(tmp_path):
    path = str(tmp_path / 'biases.pth')  # only 1-D tensors: nothing to mask
    torch.save(dict(state_dict={'conv1.bias': torch.ones(2)}), path)
    with pytest.raises(ValueError) as info:
        make_hook(
            init='checkpoint',
            mask_checkpoint=path).before_train(make_runner())
    assert str(info.value) == (
        f"SparseTrainingHook (init='checkpoint'): {path} holds no mask and "
        'no 2-D/4-D weight to take a mask from (it would train dense)')


def test_erk_power_scale_reaches_the_densities():
    runner = make_runner()
    hook = make_hook(init='erk', erk_power_scale=0.5, dense_threshold=None)
    hook.before_train(runner)
    # by hand, (sum / prod) ** 0.5: conv1 0.2806, dw 0.2422, conv2 0.4507,
    # fc 0.5590; eps = 400 / sum(raw * numel) = 400 / 250.27 (none over 1)
    numel = {n: math.prod(s) for n, s in SHAPES.items()}
    raw = {n: (sum(s) / numel[n])**0.5 for n, s in SHAPES.items()}
    eps = 400 / sum(raw[n] * numel[n] for n in SHAPES)
    counts = {n: int(hook.masks.mask(n).sum()) for n in hook.masks.names()}
    assert sum(counts.values()) == 400
    for n in SHAPES:
        assert abs(counts[n] - eps * raw[n] * numel[n]) < 1, n


def test_orphan_warning_names_at_most_five():
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(7)])
    runner = make_runner()
    runner.model = model
    runner.optim_wrapper = SimpleNamespace(
        optimizer=torch.optim.SGD([m.bias for m in model], lr=0.1))
    make_hook().before_train(runner)
    names = sorted(f'{i}.weight' for i in range(7))
    assert runner.logger.warnings == [
        'SparseTrainingHook: masked weights not in any optimizer (kept '
        f'masked, never updated): {names[:5]}'
    ]
