"""DynamicSparsity on a tiny plain-torch model, no Runner (fast enough for
mutation testing). Every expected value comes from a hand formula (the
paper's / the reference's sparse_core.py and model_sema.py), never from
mmslak.sparse."""
import inspect
import logging
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmslak.sparse import DynamicSparsity
from mmslak.sparse import dynamic as dynamic_module
from mmslak.sparse import validation

SHAPES = OrderedDict([('conv1.weight', (8, 3, 3, 3)),
                      ('dw.weight', (8, 1, 7, 7)),
                      ('conv2.weight', (16, 8, 1, 1)), ('fc.weight', (4, 16))])
SCOPE_NUMEL = 216 + 392 + 128 + 64  # 800


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

    def forward(self, x):
        x = self.conv2(self.dw(self.conv1(x)))
        return self.fc(x.mean((2, 3)))


def make(model=None, **kw):
    args = dict(density=0.5, init='uniform', update_interval=3, seed=5)
    args.update(kw)
    sparsity = DynamicSparsity(model or TinyNet(), **args)
    sparsity.init_masks()
    return sparsity


def cosine(it, total, start, end):
    """The paper's cosine decay of the prune rate (float64)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * it / total))


def counts(sparsity):
    return {
        n: int(sparsity.masks.mask(n).sum())
        for n in sparsity.masks.names()
    }


class Logged:
    """What DynamicSparsity logs: (level, message)."""

    def __init__(self, monkeypatch):
        self.records = []
        monkeypatch.setattr(dynamic_module, 'print_log', self.record)
        monkeypatch.setattr(validation, 'print_log', self.record)

    def record(self, msg, logger=None, level=logging.INFO):
        assert logger == 'current'
        self.records.append((level, msg))

    def text(self, level):
        return '\n'.join(m for lv, m in self.records if lv == level)


def copy_of(model):
    other = TinyNet()
    other.load_state_dict(model.state_dict())
    return other


# ----------------------------------------------------------------------
# arguments
@pytest.mark.parametrize('kwargs, names', [
    (dict(density=0), 'density'),
    (dict(density=1.5), 'density'),
    (dict(density='0.5'), 'density'),
    (dict(density=True), 'density'),
    (dict(init='dense'), 'init'),
    (dict(growth='momentum'), 'growth'),
    (dict(update_interval=0), 'update_interval'),
    (dict(update_interval=2.0), 'update_interval'),
    (dict(prune_rate=0.1, final_prune_rate=0.2), 'final_prune_rate'),
    (dict(prune_rate=1.1), 'prune_rate'),
    (dict(final_prune_rate=-0.1), 'final_prune_rate'),
    (dict(dense_threshold=0), 'dense_threshold'),
    (dict(dense_threshold=1.01), 'dense_threshold'),
    (dict(exclude=['head(']), 'head('),
    (dict(exclude=[3]), 'exclude'),
    (dict(scope='strips'), 'scope'),
])
def test_argument_errors_name_the_argument(kwargs, names):
    with pytest.raises((TypeError, ValueError)) as info:
        DynamicSparsity(TinyNet(), **kwargs)
    assert names in str(info.value)


def test_documented_defaults():
    """The paper's values (SLaK-T: -u 2000, prune rate 0.5, cosine to
    0.005, random growth, SNIP then random masks; the reference's 0.99)."""
    got = {
        k: v.default
        for k, v in inspect.signature(DynamicSparsity).parameters.items()
        if k != 'model'
    }
    assert got == dict(
        density=0.6,
        init='snip',
        scope='all',
        exclude=(),
        dynamic=True,
        update_interval=2000,
        total_steps=None,
        prune_rate=0.5,
        final_prune_rate=0.005,
        growth='random',
        erk_power_scale=1.0,
        snip_random=True,
        dense_threshold=0.99,
        seed=0)
    fresh = DynamicSparsity(TinyNet(), prune_rate=0.3)
    assert fresh.masks is None and fresh.num_steps == fresh.num_updates == 0
    assert fresh.current_prune_rate == 0.3 and fresh.last_update == {}
    fresh.detach()  # nothing attached: nothing to remove
    # the defaults at work: every 2000 steps, SNIP then random masks,
    # generator seed 0
    default = DynamicSparsity(TinyNet(), density=0.5, init='uniform')
    assert default.update_due(2000) and not default.update_due(1000)
    assert default.snip_random is True
    default.init_masks()
    for n in SHAPES:
        assert torch.equal(default.masks.mask(n), make(seed=0).masks.mask(n))


@pytest.mark.parametrize('kwargs', [
    dict(density=1),
    dict(prune_rate=0., final_prune_rate=0.),
    dict(prune_rate=1., final_prune_rate=1.),
    dict(dense_threshold=1.),
    dict(dense_threshold=None),
    dict(dynamic=False, update_interval=0),
    dict(exclude='^fc'),
])
def test_arguments_at_their_limits_are_accepted(kwargs):
    DynamicSparsity(TinyNet(), **kwargs)


def test_options_are_checked_without_a_model():
    """``check_options``: the constructor's checks for a caller that has no
    model yet (the hook, when it is built); the options are the
    constructor's arguments but the model, the run's length and the
    seed."""
    assert DynamicSparsity.OPTIONS == ('density', 'init', 'scope', 'exclude',
                                       'dynamic', 'update_interval',
                                       'prune_rate', 'final_prune_rate',
                                       'growth', 'erk_power_scale',
                                       'snip_random', 'dense_threshold')
    # only the given options come back, density a float, exclude a list
    got = DynamicSparsity.check_options(
        density=1, exclude='^fc', scope='large_kernel', snip_random=False)
    assert got == dict(
        density=1.0, exclude=['^fc'], scope='large_kernel', snip_random=False)
    assert type(got['density']) is float
    assert DynamicSparsity.check_options() == {}
    assert DynamicSparsity.check_options(
        erk_power_scale=0.5, total_steps=9, seed=3) == dict(
            erk_power_scale=0.5, total_steps=9, seed=3)
    # the same errors as the constructor, naming the argument
    bad = [
        (dict(density=0), 'density'),
        (dict(init='dense'), 'init'),
        (dict(scope='strips'), 'scope'),
        (dict(growth='momentum'), 'growth'),
        (dict(update_interval=0), 'update_interval'),
        (dict(exclude=['head(']), 'head('),
        (dict(dense_threshold=1.5), 'dense_threshold'),
    ]
    for kwargs, name in bad:
        with pytest.raises((TypeError, ValueError)) as info:
            DynamicSparsity.check_options(**kwargs)
        assert name in str(info.value)
    # an option not given takes its default in the checks: prune_rate 0.5,
    # final_prune_rate 0.005
    with pytest.raises(ValueError, match='final_prune_rate'):
        DynamicSparsity.check_options(final_prune_rate=0.6)
    with pytest.raises(ValueError, match='prune_rate'):
        DynamicSparsity.check_options(prune_rate=0.001)
    DynamicSparsity.check_options(prune_rate=0.005)
    DynamicSparsity.check_options(final_prune_rate=0.5)
    # a static configuration needs no update interval
    assert DynamicSparsity.check_options(
        dynamic=False, update_interval=0) == dict(
            dynamic=False, update_interval=0)
    # an unknown name (a typo in a config) is refused by name
    with pytest.raises(TypeError, match='densty'):
        DynamicSparsity.check_options(densty=0.5)
    with pytest.raises(TypeError):
        DynamicSparsity.check_options(model=TinyNet())


def test_the_checked_options_are_the_attributes():
    """Every option given to the constructor is kept as an attribute of
    the same name, density as a float and exclude as a list."""
    given = dict(
        density=1,
        init='erk',
        scope='all',
        exclude='^fc',
        dynamic=False,
        update_interval=7,
        prune_rate=0.4,
        final_prune_rate=0.1,
        growth='gradient',
        erk_power_scale=0.5,
        snip_random=False,
        dense_threshold=None)
    sparsity = DynamicSparsity(TinyNet(), total_steps=11, **given)
    got = {name: getattr(sparsity, name) for name in given}
    assert got == dict(given, density=1.0, exclude=['^fc'])
    assert type(sparsity.density) is float
    assert sparsity.total_steps == 11 and sparsity.current_prune_rate == 0.4


# ----------------------------------------------------------------------
# initial masks
def test_uniform_init_counts_and_the_step_hook_masks_after_each_step():
    sparsity = make()
    model = sparsity.model
    # every layer at density 0.5 exactly (all numels are even)
    assert counts(sparsity) == {
        n: math.prod(s) // 2
        for n, s in SHAPES.items()
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    assert sorted(sparsity.attach(optimizer)) == sorted(SHAPES)
    for step in range(2):
        for n, p in model.named_parameters():
            if n in SHAPES:
                m = sparsity.masks.mask(n)
                assert (p[~m] == 0).all() and (p[m] != 0).all(), (n, step)
        for p in model.parameters():
            p.grad = -torch.ones_like(p)
        optimizer.step()
    # detach removes the step hooks: a step no longer re-masks
    sparsity.detach()
    optimizer.step()
    assert (model.conv1.weight != 0).all()
    # and attaching again works
    sparsity.attach(optimizer)
    optimizer.step()
    m = sparsity.masks.mask('conv1.weight')
    assert (model.conv1.weight[~m] == 0).all()


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
    sparsity = make(init='erk')
    dens = reference_erk(SHAPES, 0.5)
    assert dens['fc.weight'] == dens['conv2.weight'] == 1.0
    # by hand: eps = (400 - 64 - 128) / (17 + 23) = 5.2; 5.2 * 17 = 88.4,
    # 5.2 * 23 = 119.6; 88 + 119 + 192 = 399, the larger remainder (dw)
    # gets the 400th weight
    assert dens['conv1.weight'] * 216 == pytest.approx(88.4, abs=1e-9)
    assert counts(sparsity) == {'conv1.weight': 88, 'dw.weight': 120}
    assert list(sparsity.masks.dense) == ['conv2.weight', 'fc.weight']
    assert (sparsity.model.fc.weight != 0).all()
    # a larger power scale favours the small layers more: conv1 (raw
    # 17/216) gains on dw (23/392)
    steep = make(init='erk', erk_power_scale=2.)
    assert counts(steep)['conv1.weight'] > 88


def test_a_layer_at_the_threshold_is_made_dense_and_none_keeps_it(monkeypatch):
    logged = Logged(monkeypatch)
    # uniform 0.75: every layer exactly at a 0.75 threshold
    assert counts(make(density=0.75, dense_threshold=0.75)) == {}
    assert logged.text(logging.INFO) == (
        'DynamicSparsity: 4 layers with initial density >= 0.75 made dense: '
        f'{list(SHAPES)}')
    kept = make(density=0.75, dense_threshold=None)
    assert counts(kept) == {
        n: math.prod(s) * 3 // 4
        for n, s in SHAPES.items()
    }
    assert counts(make(density=0.75, dense_threshold=0.76)) == counts(kept)


def test_masks_come_from_the_seeded_generator():
    g = torch.Generator().manual_seed(5)
    flat = torch.zeros(216, dtype=torch.bool)
    flat[torch.randperm(216, generator=g)[:108]] = True
    got = make(seed=5).masks.mask('conv1.weight').flatten()
    assert torch.equal(got, flat)
    assert not torch.equal(
        make(seed=6).masks.mask('conv1.weight').flatten(), flat)


@pytest.mark.parametrize('snip_random', [False, True])
def test_snip_keeps_the_global_top_scores(snip_random):
    model = TinyNet()
    x = torch.randn(4, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])

    def loss_fn(net, batch):
        return F.cross_entropy(net(batch[0]), batch[1])

    # the oracle: |w * dL/dw| on a copy, global top half
    net = copy_of(model)
    loss = loss_fn(net, (x, y))
    weights = [net.get_parameter(n) for n in SHAPES]
    grads = torch.autograd.grad(loss, weights)
    scores = torch.cat([(w * g).abs().flatten()
                        for w, g in zip(weights, grads)]).double()
    top = torch.zeros(SCOPE_NUMEL, dtype=torch.bool)
    top[torch.sort(scores, descending=True, stable=True).indices[:400]] = True
    want = dict(
        zip(SHAPES, top.split([math.prod(s) for s in SHAPES.values()])))
    sparsity = DynamicSparsity(
        model,
        density=0.5,
        init='snip',
        snip_random=snip_random,
        dense_threshold=None)
    sparsity.init_masks(batches=[(x, y)], loss_fn=loss_fn)
    for n, s in SHAPES.items():
        got = sparsity.masks.mask(n) if n in sparsity.masks else torch.ones(s)
        assert int(got.sum()) == int(want[n].sum()), n
        if not snip_random:
            assert torch.equal(got.flatten().bool(), want[n]), n
    # random masks at SNIP's densities are not the top-k positions
    assert snip_random != all(
        torch.equal(sparsity.masks.mask(n).flatten(), want[n])
        for n in sparsity.masks.names())
    with pytest.raises(ValueError, match='needs the batches'):
        DynamicSparsity(TinyNet(), init='snip').init_masks()


def test_snip_scores_a_copy_without_syncbn():
    """The scoring copy holds plain BN (SyncBN on one rank would wait for
    the others forever) and the model keeps its SyncBN."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4), nn.Flatten(),
        nn.Linear(36, 2))
    seen = []

    def loss_fn(net, batch):
        seen.append([type(m) for m in net.modules()])
        assert net is not model
        # the reverted norm runs on one process (SyncBN would refuse)
        return net(batch).square().sum()

    sparsity = DynamicSparsity(model, density=0.5, init='snip')
    sparsity.init_masks(batches=[torch.randn(2, 3, 5, 5)], loss_fn=loss_fn)
    (types, ) = seen
    assert nn.SyncBatchNorm not in types
    assert any(issubclass(t, nn.modules.batchnorm._BatchNorm) for t in types)
    assert isinstance(model[1], nn.SyncBatchNorm)


def test_snip_may_empty_a_layer_uniform_may_not(monkeypatch):
    """A layer SNIP scores 0 throughout (unused here) may end empty: a
    warning; a density-proportional init refuses to empty one."""
    logged = Logged(monkeypatch)
    model = TinyNet()
    sparsity = DynamicSparsity(model, density=0.3, init='snip')
    sparsity.init_masks(
        batches=[torch.randn(2, 3, 9, 9)],
        loss_fn=lambda net, x: net.conv1(x).square().sum())
    assert counts(sparsity)['fc.weight'] == 0
    assert 'SNIP left' in logged.text(logging.WARNING)
    with pytest.raises(ValueError, match='no active weight'):
        make(density=0.001, init='uniform')


def test_checkpoint_init_from_given_masks_or_the_weights_zeros(monkeypatch):
    logged = Logged(monkeypatch)
    model = TinyNet()
    with torch.no_grad():
        model.dw.weight[:2] = 0
    sparsity = DynamicSparsity(model, init='checkpoint', dynamic=False)
    sparsity.init_masks()
    assert counts(sparsity) == {'dw.weight': 392 - 98}
    assert logged.records == [
        (logging.INFO, 'DynamicSparsity: masks from the zeros of the current '
         'weights: 4 used, 0 not in the model/scope, 0 sparse-scope weights '
         'without a mask stay dense')
    ]
    DynamicSparsity(TinyNet(), init='checkpoint').init_masks()
    assert logged.records[-1] == (
        logging.WARNING, 'DynamicSparsity: init="checkpoint" found no zero '
        'weight; training dense')
    given = {
        'conv1.weight': torch.arange(216).view(8, 3, 3, 3) % 3 == 0,
        'elsewhere.weight': torch.zeros(2, 2, dtype=torch.bool)
    }
    sparsity = DynamicSparsity(TinyNet(), init='checkpoint')
    sparsity.init_masks(masks=given)
    assert counts(sparsity) == {'conv1.weight': 72}
    assert logged.records[-1][1].endswith(
        'masks from the given masks: 1 used, 1 not in the model/scope, 3 '
        'sparse-scope weights without a mask stay dense')
    assert (sparsity.model.conv1.weight[~given['conv1.weight']] == 0).all()
    with pytest.raises(ValueError, match=r'conv1.weight.*\(8, 3, 3, 1\)'):
        DynamicSparsity(
            TinyNet(), init='checkpoint'
        ).init_masks(
            masks={'conv1.weight': torch.ones(8, 3, 3, 1, dtype=torch.bool)})
    with pytest.raises(ValueError, match='the given masks.*mask_prefix_map'):
        DynamicSparsity(
            TinyNet(), init='checkpoint').init_masks(
                masks={'net.conv1.weight': torch.ones(8, 3, 3, 3)})


def test_a_density_that_empties_a_layer_is_refused():
    with pytest.raises(ValueError, match='density=0.001'):
        make(density=0.001)


# ----------------------------------------------------------------------
# schedule and updates
def test_updates_every_interval_never_at_the_last_step():
    sparsity = make(
        growth='random', prune_rate=0.4, final_prune_rate=0.1, total_steps=18)
    updated = [k for k in range(1, 19) if sparsity.step()]
    assert updated == [3, 6, 9, 12, 15]  # not 18
    assert sparsity.num_updates == 5 and sparsity.num_steps == 18
    assert sparsity.current_prune_rate == pytest.approx(
        cosine(15, 18, 0.4, 0.1))
    assert sparsity.prune_rate_at(9) == pytest.approx(cosine(9, 18, 0.4, 0.1))
    static = make(dynamic=False, update_interval=1)
    assert not any(static.step() for _ in range(5))
    assert static.prune_rate_at(1) == 0.
    assert make(total_steps=None).prune_rate_at(10**6) == 0.5


def test_update_prunes_the_smallest_and_regrows_as_many_at_zero():
    sparsity = make(prune_rate=0.5)
    model = sparsity.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    sparsity.attach(optimizer)
    for p in model.parameters():
        p.grad = torch.randn(p.shape)
    optimizer.step()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    moments = {
        n: {
            k: v.clone()
            for k, v in optimizer.state[p].items()
        }
        for n, p in model.named_parameters()
    }
    old = sparsity.masks.bool_masks()
    rate = 0.37
    sparsity.update(rate)
    assert sparsity.current_prune_rate == rate and sparsity.num_updates == 1
    for n in SHAPES:
        active = int(old[n].sum())
        num = math.ceil(rate * active)  # the reference's count
        w = weights[n].double().flatten()
        order = sorted((i for i in range(w.numel()) if old[n].flatten()[i]),
                       key=lambda i: abs(float(w[i])))
        kept = set(order[num:])
        newf = sparsity.masks.mask(n).flatten()
        assert all(newf[i] for i in kept), n
        grown = [i for i in range(w.numel()) if newf[i] and i not in kept]
        assert len(grown) == num and int(newf.sum()) == active, n
        assert sparsity.last_update[n] == dict(pruned=num, regrown=num)
        # a newly active weight starts at 0; one pruned and regrown at
        # once keeps its value (the reference masks once, after growth)
        p = model.get_parameter(n).detach().flatten()
        was = old[n].flatten()
        assert all(float(p[i]) == 0 for i in grown if not was[i]), n
        assert all(p[i] == weights[n].flatten()[i] for i in grown if was[i])
        assert torch.equal(p[list(kept)], weights[n].flatten()[list(kept)])
        assert torch.equal(sparsity.masks.explored[n],
                           old[n] | sparsity.masks.mask(n))
        # AdamW's moments are never touched (the reference's)
        for key, value in optimizer.state[model.get_parameter(n)].items():
            assert torch.equal(value, moments[n][key]), (n, key)


def test_gradient_growth_regrows_the_largest_gradients_of_the_step():
    sparsity = make(
        growth='gradient', prune_rate=0.3, final_prune_rate=0., total_steps=20)
    model = sparsity.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sparsity.attach(optimizer)
    for _ in range(2):
        sparsity.step()
    grads = {n: torch.randn(p.shape) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()
    optimizer.step()  # step 3 ends an interval: its gradients are kept
    optimizer.zero_grad()  # as mmengine's OptimWrapper does before hooks
    old = sparsity.masks.bool_masks()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert sparsity.step()
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
        assert torch.equal(
            sparsity.masks.mask(n).flatten(), after_prune | want)


def test_gradient_growth_without_a_gradient_regrows_at_random(monkeypatch):
    logged = Logged(monkeypatch)
    sparsity = make(growth='gradient', prune_rate=0.3)
    twin = make(growth='random', prune_rate=0.3)
    sparsity.update(0.3)  # no step, no gradient kept
    twin.update(0.3)
    for n in SHAPES:
        assert torch.equal(sparsity.masks.mask(n), twin.masks.mask(n))
    assert 'regrowing at random' in logged.text(logging.WARNING)


def test_sgd_momentum_is_masked_after_each_step():
    """The reference's apply_mask masks ``momentum_buffer``."""
    sparsity = make()
    model = sparsity.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsity.attach(optimizer)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        buf = optimizer.state[p]['momentum_buffer']
        if n in SHAPES:
            m = sparsity.masks.mask(n)
            assert (buf[~m] == 0).all() and (buf[m] == 1).all(), n
        else:
            assert (buf == 1).all(), n


# ----------------------------------------------------------------------
# the averaged model
def test_mask_average_follows_the_reference_model_ema():
    """model_sema.py ModelEma.update(model, mask): ema = (d * ema + (1 - d)
    * model) * mask, and where ema was exactly 0 with mask 1 the model's
    value."""
    sparsity = make()
    model, d = sparsity.model, 0.9
    ema = copy_of(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(2.)
        ema.conv1.weight[0] = 0.  # "new" positions where the mask is on
    before = {
        n: p.detach().clone().double()
        for n, p in ema.named_parameters()
    }
    new = sparsity.new_in_average(ema)
    with torch.no_grad():
        for p, q in zip(ema.parameters(), model.parameters()):
            p.mul_(d).add_(q, alpha=1 - d)
    sparsity.mask_average(ema, new)
    for n, p in ema.named_parameters():
        src = model.get_parameter(n).detach().double()
        want = d * before[n] + (1 - d) * src
        if n in SHAPES:
            m = sparsity.masks.mask(n)
            fresh = (before[n] == 0) & m
            want = torch.where(fresh, src, want * m)
            assert fresh.any() or n != 'conv1.weight'
        torch.testing.assert_close(p.double(), want, rtol=1e-6, atol=1e-7)
    # an averaged model keeps its copy under .module (mmengine, torch); a
    # weight of another shape there is left alone
    wrapped = torch.optim.swa_utils.AveragedModel(TinyNet())
    wrapped.module.fc = nn.Linear(4, 4)
    sparsity.mask_average(wrapped)
    assert (wrapped.module.fc.weight != 0).all()
    m = sparsity.masks.mask('dw.weight')
    assert (wrapped.module.dw.weight[~m] == 0).all()
    assert (wrapped.module.dw.weight[m] != 0).all()


# ----------------------------------------------------------------------
# state
def test_state_dict_round_trip_continues_exactly():
    sparsity = make(init='erk', prune_rate=0.5, total_steps=20)
    for _ in range(6):
        sparsity.step()
    state = sparsity.state_dict()
    assert state['version'] == 2 and state['mask_format'] == 'packbits'
    assert state['dense'] == ['conv2.weight', 'fc.weight']
    assert (state['num_steps'], state['num_updates'], state['density'],
            state['init'], state['scope'],
            state['dynamic']) == (6, 2, 0.5, 'erk', 'all', True)
    assert state['prune_rate'] == pytest.approx(cosine(6, 20, 0.5, 0.005))
    # numpy's packbits order, by hand: first element = most significant
    m = sparsity.masks.mask('conv1.weight').flatten()[:8].tolist()
    assert int(state['masks']['conv1.weight'][0]) == sum(
        b << (7 - i) for i, b in enumerate(m))
    resumed = DynamicSparsity(
        copy_of(sparsity.model),
        density=0.5,
        init='erk',
        update_interval=3,
        total_steps=20,
        seed=99)
    resumed.load_state_dict(state)
    assert (resumed.num_steps, resumed.num_updates) == (6, 2)
    assert resumed.current_prune_rate == sparsity.current_prune_rate
    for n in sparsity.masks.names():
        assert torch.equal(resumed.masks.mask(n), sparsity.masks.mask(n))
        assert torch.equal(resumed.masks.explored[n],
                           sparsity.masks.explored[n])
        assert not torch.equal(sparsity.masks.explored[n],
                               sparsity.masks.mask(n))
    # the next update draws the same regrowth (the generator was restored)
    for _ in range(3):
        sparsity.step()
        resumed.step()
    for n in sparsity.masks.names():
        assert torch.equal(resumed.masks.mask(n), sparsity.masks.mask(n))
    # a version-1 state (bool masks, no step count) loads too, as does a
    # bare one (masks only)
    old = dict(masks=sparsity.masks.bool_masks(), num_updates=3)
    resumed.load_state_dict(old)
    assert (resumed.num_steps, resumed.num_updates) == (0, 3)
    resumed.load_state_dict(dict(masks=sparsity.masks.bool_masks()))
    assert (resumed.num_steps, resumed.num_updates) == (0, 0)
    assert resumed.current_prune_rate == 0.5
    for n in sparsity.masks.names():
        assert torch.equal(resumed.masks.explored[n], sparsity.masks.mask(n))
    outside = DynamicSparsity(TinyNet(), exclude=['^fc'])
    with pytest.raises(KeyError, match='fc.weight'):
        outside.load_state_dict(
            dict(masks={'fc.weight': torch.ones(4, 16, dtype=torch.bool)}))


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

    single = make(prune_rate=0.5)
    single.update(0.5)
    monkeypatch.setattr(dynamic_module, 'get_world_size', lambda: 2)
    monkeypatch.setattr(dynamic_module, 'broadcast', fake_broadcast)
    rank0 = make(prune_rate=0.5)
    rank0.update(0.5)
    message, codes = sent
    assert message.numel() == codes.numel() == SCOPE_NUMEL
    assert int(message.sum()) == 400
    monkeypatch.setattr(dynamic_module, 'get_rank', lambda: 1)
    incoming.extend([message, codes])  # rank 0's masks, then its update
    rank1 = make(prune_rate=0.5, seed=77)
    rank1.update(0.5)
    assert incoming == [] and len(sent) == 2
    offset = 0
    for n in SHAPES:
        size = math.prod(SHAPES[n])
        c = codes[offset:offset + size].view(SHAPES[n])
        offset += size
        assert int((c == 2).sum()) == single.last_update[n]['regrown'] > 0
        for s in (rank0, rank1):
            assert torch.equal(s.masks.mask(n), single.masks.mask(n)), n
            assert torch.equal(s.masks.mask(n), c > 0), n
            assert s.last_update[n] == single.last_update[n]
        # the receiving rank's weights follow (same start, same decisions)
        assert torch.equal(
            rank1.model.get_parameter(n), single.model.get_parameter(n))


def test_the_docstring_example_trains_a_plain_loop(tmp_path, monkeypatch):
    """The plain-PyTorch example of DynamicSparsity's docstring runs as
    written and ends with masked weights and a masked average."""
    doc = DynamicSparsity.__doc__
    code = doc.split('Example (a plain PyTorch loop)::')[1].split('Args:')[0]
    code = '\n'.join(line[8:] for line in code.split('\n'))
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(2, 3, 9, 9, generator=g), torch.tensor([0, 3]))
              for _ in range(4)]
    scope = dict(
        torch=torch,
        F=F,
        DynamicSparsity=DynamicSparsity,
        MyNet=TinyNet,
        loader=loader,
        epochs=2)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, 'docstring', 'exec'), scope)
    sparsity, ema = scope['sparsity'], scope['ema']
    assert sparsity.num_steps == 8
    for n in sparsity.masks.names():
        m = sparsity.masks.mask(n)
        assert (sparsity.masks.params[n][~m] == 0).all(), n
        assert (ema.module.get_parameter(n)[~m] == 0).all(), n
    assert (tmp_path / 'ckpt.pth').is_file()
