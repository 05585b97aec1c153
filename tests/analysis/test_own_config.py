"""The README's "use SLaK in your own mmseg/mmdet config" examples load,
build, run and get SLaK-aware layer-wise learning rates."""
from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mmslak.apis import build_model, load_config

DATA = Path(__file__).parent / 'data'


def _lrs_by_prefix(optim_wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    lrs = {}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            lrs[names[id(p)]] = group['lr']
    return lrs


def test_own_mmseg_config_builds_and_runs():
    cfg = load_config(str(DATA / 'own_mmseg_config.py'))
    assert cfg.model.backbone.type == 'mmpretrain.SLaK'
    model = build_model(cfg)
    assert type(model.backbone).__name__ == 'SLaK'
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
        logits = model.decode_head(feats)
    assert [f.shape[1] for f in feats] == [124, 249, 499, 998]
    assert logits.shape == (1, 150, 16, 16)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = _lrs_by_prefix(optim, model)
    stem = lrs['backbone.downsample_layers.0.0.weight']
    head = lrs['decode_head.conv_seg.weight']
    assert head == pytest.approx(1e-4)
    assert stem == pytest.approx(1e-4 * 0.9**7)  # 6 layers + 1 below head


def test_own_mmdet_config_builds_and_runs():
    cfg = load_config(str(DATA / 'own_mmdet_config.py'))
    model = build_model(cfg)
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
    assert len(feats) == 5 and all(f.shape[1] == 256 for f in feats)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = _lrs_by_prefix(optim, model)
    assert lrs['roi_head.bbox_head.fc_cls.weight'] == pytest.approx(2e-4)
    assert lrs['backbone.stages.3.0.pwconv1.weight'] < 2e-4
