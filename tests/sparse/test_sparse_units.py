"""Unit tests of the sparse-training pieces (no Runner)."""
import math
import os
import sys

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from mmslak.engine.hooks import SparseTrainingHook
from mmslak.sparse import (SparseMasks, cosine_prune_rate, densities_to_counts,
                           erk_densities, grow_gradient, grow_random,
                           masks_from_checkpoint, prune_magnitude, random_mask,
                           reset_optimizer_state, select_sparse_params,
                           snip_counts, snip_scores, uniform_densities)
from mmslak.sparse.scope import sparse_shapes
from mmslak.sparse.summary import format_sparsity_table, sparsity_table


def test_scope_all_large_kernel_exclude(tiny_slak_classifier):
    model = tiny_slak_classifier()
    every = {n for n, p in model.named_parameters() if p.dim() in (2, 4)}
    assert set(select_sparse_params(model, 'all')) == every
    assert 'head.weight' in every
    assert 'backbone.downsample_layers.0.0.weight' in every  # stem
    lk = select_sparse_params(model, 'large_kernel')
    assert len(lk) == 8  # 4 blocks x (LoRA1, LoRA2)
    assert all('LoRA' in n for n in lk)
    assert tuple(
        lk['backbone.stages.0.0.large_kernel.LoRA1.conv.weight'].shape) == (8,
                                                                            1,
                                                                            7,
                                                                            3)
    kept = select_sparse_params(model, 'all', exclude=[r'^head\.', 'pwconv'])
    assert set(kept) == {
        n
        for n in every if not n.startswith('head.') and 'pwconv' not in n
    }
    model.backbone.downsample_layers[0][0].weight.requires_grad_(False)
    assert ('backbone.downsample_layers.0.0.weight'
            not in select_sparse_params(model, 'all'))
    with pytest.raises(ValueError, match='scope'):
        select_sparse_params(model, 'convs')
    with pytest.raises(ValueError, match='nothing to sparsify'):
        select_sparse_params(model, 'all', exclude=['.'])


def test_uniform_and_counts_exact_total():
    shapes = {'a': (10, 3), 'b': (7, 1, 3, 3), 'c': (5, )}
    dens = uniform_densities(shapes, 0.37)
    assert set(dens.values()) == {0.37}
    counts = densities_to_counts(dens, shapes)
    numel = {'a': 30, 'b': 63, 'c': 5}
    assert sum(counts.values()) == round(0.37 * 98)
    for n in shapes:  # each layer within one weight of its density
        assert abs(counts[n] - 0.37 * numel[n]) < 1
    assert sum(densities_to_counts(dens, shapes, total=40).values()) == 40
    with pytest.raises(ValueError, match='density'):
        uniform_densities(shapes, 0.)


def test_erk_matches_formula():
    shapes = {
        'conv': (64, 32, 3, 3),
        'dw': (64, 1, 31, 5),
        'fc': (128, 64),
        'head': (100, 128)
    }
    density = 0.2
    dens = erk_densities(shapes, density)
    # independent: eps * (sum/prod) with eps from the total budget
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    eps = density * sum(numel.values()) / sum(raw[n] * numel[n]
                                              for n in shapes)
    assert all(eps * raw[n] <= 1 for n in shapes)
    for n in shapes:
        assert dens[n] == pytest.approx(eps * raw[n], rel=1e-12)
    total = sum(dens[n] * numel[n] for n in shapes)
    assert total == pytest.approx(density * sum(numel.values()))
    # power scale
    d2 = erk_densities(shapes, density, power_scale=0.5)
    eps2 = density * sum(numel.values()) / sum(raw[n]**0.5 * numel[n]
                                               for n in shapes)
    assert d2['fc'] == pytest.approx(eps2 * raw['fc']**0.5)


def test_erk_caps_and_redistributes():
    # the depthwise kernel's raw score is huge: it must be capped at 1
    shapes = {'big': (256, 256), 'dw': (4, 1, 3, 3), 'mid': (64, 64)}
    density = 0.2
    dens = erk_densities(shapes, density)
    assert dens['dw'] == 1.0
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    budget = density * sum(numel.values()) - numel['dw']
    eps = budget / (raw['big'] * numel['big'] + raw['mid'] * numel['mid'])
    assert dens['big'] == pytest.approx(eps * raw['big'])
    assert dens['mid'] == pytest.approx(eps * raw['mid'])
    total = sum(dens[n] * numel[n] for n in shapes)
    assert total == pytest.approx(density * sum(numel.values()))


class _Crafted(nn.Module):

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(6, 5))
        self.b = nn.Parameter(torch.randn(3, 2, 2, 2))
        self.bias = nn.Parameter(torch.randn(4))


def test_snip_picks_global_top_scores():
    model = _Crafted()
    coef_a = torch.randn(6, 5)
    coef_b = torch.randn(3, 2, 2, 2) * 3

    def loss_fn(net, batch):  # dL/da = coef_a * batch, dL/db = coef_b
        return (net.a * coef_a * batch).sum() + (net.b * coef_b).sum()

    scores = snip_scores(model, ['a', 'b'], [1.0, 2.0], loss_fn)
    # the model itself is untouched (scores come from a copy)
    assert model.a.grad is None
    assert_close(scores['a'], (model.a * coef_a).abs() * 3)
    assert_close(scores['b'], (model.b * coef_b).abs() * 2)
    density = 0.45
    counts = snip_counts(scores, density)
    flat = torch.cat([scores['a'].flatten(), scores['b'].flatten()])
    k = round(density * flat.numel())
    top = torch.sort(flat, descending=True, stable=True).indices[:k]
    assert counts == {'a': int((top < 30).sum()), 'b': int((top >= 30).sum())}
    assert sum(counts.values()) == k
    with pytest.raises(ValueError, match='batch'):
        snip_scores(model, ['a'], [], loss_fn)


def test_prune_magnitude_removes_smallest_active():
    w = torch.randn(40, 30)
    mask = torch.rand(40, 30) < 0.7
    n = 100
    new, pruned = prune_magnitude(w, mask, n)
    assert int(pruned.sum()) == n
    assert not (pruned & ~mask).any()  # only active ones are pruned
    assert torch.equal(new, mask & ~pruned)
    kept = w[new].abs()
    assert w[pruned].abs().max() <= kept.min()
    # independent: sort the active magnitudes
    active_mags = torch.sort(w[mask].abs()).values
    assert_close(torch.sort(w[pruned].abs()).values, active_mags[:n])
    with pytest.raises(ValueError, match='cannot prune'):
        prune_magnitude(w, mask, int(mask.sum()) + 1)


def test_grow_random_and_gradient():
    mask = torch.rand(20, 10) < 0.5
    g = torch.Generator().manual_seed(0)
    new, grown = grow_random(mask, 30, g)
    assert int(grown.sum()) == 30 and not (grown & mask).any()
    assert torch.equal(new, mask | grown)
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(grow_random(mask, 30, g2)[1], grown)
    grad = torch.randn(20, 10)
    new, grown = grow_gradient(mask, grad, 25)
    assert int(grown.sum()) == 25 and not (grown & mask).any()
    inactive_mags = torch.sort(grad[~mask].abs(), descending=True).values
    assert_close(
        torch.sort(grad[grown].abs(), descending=True).values,
        inactive_mags[:25])
    with pytest.raises(ValueError, match='cannot regrow'):
        grow_random(mask, int((~mask).sum()) + 1, g)


def test_cosine_prune_rate():
    assert cosine_prune_rate(0, 1000, 0.5) == pytest.approx(0.5)
    assert cosine_prune_rate(500, 1000, 0.5) == pytest.approx(
        (0.5 + 0.005) / 2)
    assert cosine_prune_rate(1000, 1000, 0.5) == pytest.approx(0.005)
    assert cosine_prune_rate(250, 1000, 0.3,
                             0.) == pytest.approx(0.15 *
                                                  (1 + math.cos(math.pi / 4)))


def test_reset_optimizer_state_and_commit():
    lin = nn.Linear(8, 6)
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.1)
    masks = SparseMasks({'weight': lin.weight},
                        {'weight': torch.rand(6, 8) < 0.5})
    masks.apply()
    for _ in range(2):
        lin(torch.randn(3, 8)).sum().backward()
        opt.step()
        masks.apply()
    state = opt.state[lin.weight]
    old = masks.mask('weight')
    before = masks.counts()['weight']
    new, grown = masks.prune_regrow('weight', 5, 'random',
                                    torch.Generator().manual_seed(1))
    assert int(grown.sum()) == 5
    masks.commit('weight', new, grown)
    assert reset_optimizer_state(opt, lin.weight, grown) == 2
    assert masks.counts()['weight'] == before
    assert (lin.weight[grown] == 0).all()
    assert (lin.weight[~new] == 0).all()
    assert (state['exp_avg'][grown] == 0).all()
    assert (state['exp_avg_sq'][grown] == 0).all()
    assert (state['exp_avg'][new & ~grown] != 0).any()
    assert torch.equal(masks.explored['weight'], old | new)
    stats = masks.stats()
    assert stats['active'] == before and stats['total'] == 48


def test_sparse_masks_dense_layers_and_errors():
    a, b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(3, 3))
    masks = SparseMasks({
        'a': a,
        'b': b
    }, {
        'a': torch.ones(4, 4, dtype=torch.bool),
        'b': torch.eye(3, dtype=torch.bool)
    })
    assert masks.names() == ['b'] and list(masks.dense) == ['a']
    assert masks.stats()['active'] == 16 + 3
    with pytest.raises(ValueError, match='shape'):
        SparseMasks({'a': a}, {'a': torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(KeyError, match='outside'):
        SparseMasks({'a': a}, {'z': torch.ones(4, 4, dtype=torch.bool)})


def test_random_mask_count():
    m = random_mask((5, 1, 7, 3), 42, torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and int(m.sum()) == 42


def test_masks_from_checkpoint_and_summary(tmp_path):
    w = torch.randn(6, 4)
    w[0] = 0
    saved = torch.ones(6, 4, dtype=torch.bool)
    saved[1] = False
    sd = {
        'fc.weight': w,
        'fc.bias': torch.zeros(6),
        'bn.running_var': torch.ones(6)
    }
    # no 'sparsity' entry: masks are the non-zeros of 2-D/4-D weights
    masks = masks_from_checkpoint({'state_dict': sd})
    assert list(masks) == ['fc.weight']
    assert torch.equal(masks['fc.weight'], w != 0)
    assert torch.equal(
        masks_from_checkpoint({'model': sd})['fc.weight'], w != 0)
    ckpt = {
        'state_dict': sd,
        'sparsity': {
            'masks': {
                'fc.weight': saved
            },
            'explored': {
                'fc.weight': saved | ~saved
            }
        }
    }
    assert torch.equal(masks_from_checkpoint(ckpt)['fc.weight'], saved)
    path = str(tmp_path / 'c.pth')
    torch.save(ckpt, path)
    assert torch.equal(masks_from_checkpoint(path)['fc.weight'], saved)
    table = sparsity_table(path)
    assert table['rows'] == [('fc.weight', (6, 4), 20, 24, 20)]
    assert table['nonzero'] == 20 and table['params'] == 30
    assert table['explored'] == 1.0 and table['source'] == 'sparsity'
    # an in-scope layer the hook left dense is listed at density 1
    sd['head.weight'] = torch.ones(2, 3)
    ckpt['sparsity']['dense'] = ['head.weight']
    table = sparsity_table(ckpt)
    assert table['rows'][-1] == ('head.weight', (2, 3), 6, 6, 6)
    assert table['active'] == 26 and table['numel'] == 30
    assert table['explored'] == 1.0
    text = format_sparsity_table(table)
    assert 'fc.weight' in text and '0.8333' in text
    with pytest.raises(TypeError):
        masks_from_checkpoint([1, 2])


def test_sparsity_summary_tool(tmp_path, capsys, monkeypatch):
    sys.path.insert(
        0,
        os.path.join(
            os.path.dirname(__file__), '..', '..', 'tools', 'analysis'))
    import sparsity_summary
    w = torch.randn(4, 1, 3, 3)
    w[:, :, 0] = 0
    path = str(tmp_path / 'c.pth')
    torch.save({'model': {'conv.weight': w}}, path)
    out = str(tmp_path / 't.txt')
    monkeypatch.setattr(sys, 'argv', ['x', path, '--out', out])
    sparsity_summary.main()
    printed = capsys.readouterr().out
    assert 'conv.weight' in printed and '0.6667' in printed
    assert open(out).read().strip() == printed.strip()


def test_hook_argument_errors():
    with pytest.raises(ValueError, match='density'):
        SparseTrainingHook(density=1.5)
    with pytest.raises(ValueError, match='init'):
        SparseTrainingHook(init='magic')
    with pytest.raises(ValueError, match='growth'):
        SparseTrainingHook(growth='none')
    with pytest.raises(ValueError, match='update_interval'):
        SparseTrainingHook(update_interval=0)
    with pytest.raises(ValueError, match='prune_rate'):
        SparseTrainingHook(prune_rate=0.001)


def test_shapes_helper(tiny_slak_classifier):
    model = tiny_slak_classifier()
    params = select_sparse_params(model, 'large_kernel')
    assert sparse_shapes(params)[next(iter(params))] == (8, 1, 7, 3)
