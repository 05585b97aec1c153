"""get_flops.py counts a config's SparseTrainingHook density with no flag;
--density overrides it; a hook keeping a checkpoint's zeros sets none."""
import importlib.util
from pathlib import Path

import pytest
import torch.nn as nn
from macs_oracle import conv_linear_macs

from mmslak.apis import init_model

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmslak'])
model = dict(
    type='ImageClassifier',
    backbone=dict(type='SLaK', arch=dict(depths=[1, 1, 1, 1],
                  dims=[8, 16, 24, 32]), width_factor=1.0,
                  kernel_sizes=(13, 11, 9, 7)),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=32))
custom_hooks = [dict(type='SparseTrainingHook', {hook})]
"""


def _tool():
    spec = importlib.util.spec_from_file_location(
        '_get_flops', REPO / 'tools' / 'analysis' / 'get_flops.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('hook,flags,density', [
    ("density=0.5, init='snip'", [], 0.5),
    ("density=0.5, init='snip'", ['--density', '0.8'], 0.8),
    ("init='checkpoint', dynamic=False", [], None),
])
def test_density_from_config(tmp_path, hook, flags, density):
    cfg = tmp_path / 'cls.py'
    cfg.write_text(CONFIG.format(hook=hook))
    summary = _tool().main([str(cfg), '--shape', '64', *flags])
    model = init_model(str(cfg))
    dense = sum(p.numel() for p in model.parameters())
    weights = sum(m.weight.numel() for m in model.modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert summary['params'] == dense
    if density is None:
        assert summary['density_source'] == 'none (dense)'
        assert 'nonzero_params' not in summary or \
            summary['nonzero_params'] == dense
        return
    assert str(density) in summary['density_source']
    assert summary['nonzero_params'] == round(dense - (1 - density) * weights)
    # exact: every conv/linear MAC (forward hooks) scaled by the density
    macs = conv_linear_macs(model, (64, 64))
    assert summary['sparse_flops'] == round(summary['flops'] -
                                            (1 - density) * macs)
