"""SparseMasks on small hand-made layers: counts, densities, explored ratio
and one prune/regrow step, checked against hand-computed values (written to
kill the mutants that survived the unit tests; see tests/MUTATION.md)."""
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from mmslak.sparse.masks import SparseMasks


def _params():
    torch.manual_seed(0)
    return OrderedDict(
        a=nn.Parameter(torch.tensor([[1., -2., 3.], [-4., 5., -6.]])),
        b=nn.Parameter(torch.arange(1., 9.).view(2, 4)),
        c=nn.Parameter(torch.ones(5)),  # no mask: dense
        d=nn.Parameter(torch.ones(3)))  # all-True mask: dense


def _masks():
    return dict(
        a=torch.tensor([[1, 0, 1], [0, 1, 0]]),  # ints: cast to bool
        b=torch.tensor([[True, True, False, False], [False] * 4]),
        d=torch.ones(3, dtype=torch.bool))


def test_dense_layers_and_every_masked_layer_after_them():
    params = _params()
    # order: the dense 'c' and 'd' come after 'a'/'b'; put one first too
    params.move_to_end('a')
    masks = SparseMasks(params, _masks())
    assert masks.names() == ['b', 'a']
    assert list(masks.dense) == ['c', 'd']
    assert masks.dense['c'] is params['c'] and masks.dense['d'] is params['d']
    assert 'a' in masks and 'c' not in masks and len(masks) == 2
    assert masks.mask('a').dtype == torch.bool
    assert masks.explored['a'].dtype == torch.bool
    assert masks.mask('a').tolist() == [[True, False, True],
                                        [False, True, False]]


def test_stats_by_hand():
    masks = SparseMasks(_params(), _masks())
    stats = masks.stats()
    # masked: a 3/6, b 2/8; dense: c 5, d 3 -> active 3+2+8, total 6+8+8
    assert stats['active'] == 13 and stats['total'] == 22
    assert stats['num_dense_layers'] == 2
    assert stats['density'] == pytest.approx(13 / 22)
    assert stats['explored_ratio'] == pytest.approx(13 / 22)
    assert stats['layers'] == OrderedDict(
        a=(3, 6, pytest.approx(0.5)), b=(2, 8, pytest.approx(0.25)))
    # a given count is used as is
    assert masks.stats(dict(a=1, b=2))['active'] == 11
    empty = SparseMasks({}, {}).stats()
    assert empty['density'] == 1. and empty['explored_ratio'] == 1.
    assert empty['total'] == 0


def test_explored_grows_with_each_commit():
    params = _params()
    masks = SparseMasks(params, _masks())
    new, grown = masks.prune_regrow(
        'a',
        1,
        growth='gradient',
        grad=torch.tensor([[0., 9., 0.], [1., 0., 2.]]))
    # hand: active |w| of a are 1, 3, 5 -> prune 1 (index 0); the largest
    # inactive |grad| among (0,0),(0,1),(1,0),(1,2) is 9 at (0,1)
    assert grown.tolist() == [[False, True, False], [False, False, False]]
    assert new.tolist() == [[False, True, True], [False, True, False]]
    masks.commit('a', new, grown)
    assert params['a'].tolist() == [[0., 0., 3.], [0., 5., 0.]]
    stats = masks.stats()
    assert stats['active'] == 13
    # explored: a now 4 positions ever active (3 + the grown one)
    assert stats['explored_ratio'] == pytest.approx((4 + 2 + 8) / 22)


def test_prune_regrow_random_uses_the_generator_and_defaults_to_random():
    masks = SparseMasks(_params(), _masks())
    first = masks.prune_regrow(
        'b', 1, generator=torch.Generator().manual_seed(3))
    again = masks.prune_regrow(
        'b', 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[1], again[1])
    # the smallest active |w| of b is 1 at (0, 0): it is pruned, and one of
    # the 7 inactive positions (it included) is grown
    assert int(first[0].sum()) == 2 and int(first[1].sum()) == 1
    draws = {
        tuple(
            masks.prune_regrow(
                'b', 1, generator=torch.Generator().manual_seed(s))
            [1].flatten().nonzero().flatten().tolist())
        for s in range(40)
    }
    assert len(draws) > 3  # the generator decides: not a fixed position
    with pytest.raises(ValueError, match='needs the gradient of b'):
        masks.prune_regrow('b', 1, growth='gradient')
    with pytest.raises(ValueError, match="unknown growth 'magic'"):
        masks.prune_regrow('b', 1, growth='magic')


def test_mask_errors_name_the_layer():
    params = _params()
    with pytest.raises(ValueError, match=r'mask of a has shape \(3, 2\)'):
        SparseMasks(params, dict(a=torch.ones(3, 2, dtype=torch.bool)))
    with pytest.raises(KeyError) as info:
        SparseMasks(params, {f'x{i}': torch.ones(1) for i in range(7)})
    assert str(
        info.value).startswith('"masks for weights outside the sparse scope: ')
    assert "'x5'" not in str(info.value)  # at most five names listed
    assert "'x4'" in str(info.value)


def test_bool_masks_lists_every_masked_layer_as_bool():
    masks = SparseMasks(_params(), _masks())
    for device in (None, 'cpu'):
        got = masks.bool_masks(device)
        assert list(got) == ['a', 'b']
        assert all(m.dtype == torch.bool for m in got.values())
        assert got['b'].tolist() == [[True, True, False, False], [False] * 4]
    # a device moves them (the meta device stands in for an accelerator)
    assert masks.bool_masks('meta')['a'].device.type == 'meta'


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
