"""mmslak.sparse.summary (behind tools/analysis/sparsity_summary.py): the
per-layer densities and non-zero counts of a checkpoint, by hand."""
import os
import sys

import pytest
import torch

from mmslak.sparse import masks_from_checkpoint
from mmslak.sparse.summary import (format_layer_rows, format_sparsity_table,
                                   sparsity_table)


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
    # the hook's log has the same columns but the non-zero count
    lines = format_layer_rows([('a.w', (2, 4), 2, 8)]).split('\n')
    assert lines[0].split() == ['layer', 'shape', 'active', 'numel', 'density']
    assert lines[1].split() == ['a.w', '2x4', '2', '8', '0.2500']
    assert text.split('\n')[0].split()[-1] == 'nonzero'
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
