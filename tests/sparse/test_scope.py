"""mmslak.sparse.scope: which weights are trained sparse (the reference's
Masking.add_module rule: every 2-D / 4-D weight, or the strip kernels)."""
import pytest
import torch

from mmslak.sparse import is_sparse_weight, select_sparse_params
from mmslak.sparse.scope import sparse_shapes


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


def test_shapes_helper(tiny_slak_classifier):
    model = tiny_slak_classifier()
    params = select_sparse_params(model, 'large_kernel')
    assert sparse_shapes(params)[next(iter(params))] == (8, 1, 7, 3)


def test_is_sparse_weight_by_hand():
    conv, lin, bias = torch.ones(4, 1, 7, 5), torch.ones(3, 2), torch.ones(3)
    assert is_sparse_weight('a.conv.weight', conv)
    assert is_sparse_weight('head.fc.weight', lin)
    assert not is_sparse_weight('a.bias', bias)
    assert not is_sparse_weight('a.w', torch.ones(2, 2, 2))  # 3-D
    assert not is_sparse_weight('a.w', torch.ones(2, 2, dtype=torch.long))
    assert is_sparse_weight('s.LoRA1.conv.weight', conv, 'large_kernel')
    assert is_sparse_weight('s.LoRA2.conv.weight', conv, 'large_kernel')
    assert not is_sparse_weight('s.small.conv.weight', conv, 'large_kernel')
    with pytest.raises(ValueError, match='scope'):
        is_sparse_weight('a', conv, 'strips')
