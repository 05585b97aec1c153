import importlib.util
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmslak.analysis import (compute_erf, fallback_images,
                             high_contribution_area_ratios, load_images,
                             normalize_erf, preprocess)
from mmslak.apis import build_erf_backbone

REPO = Path(__file__).resolve().parents[2]


def load_tool(name):
    """Import tools/analysis/<name>.py as a module (no subprocess: saves
    the import time of the OpenMMLab stack)."""
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name}', REPO / 'tools' / 'analysis' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OneConv(nn.Module):
    """One KxK conv with all-ones weights: d out[c, y, x] / d in = 1 on the
    KxK window around (y, x) for every (in, out) channel pair."""

    def __init__(self, k, in_ch=3, out_ch=4):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x):
        return (self.conv(x), )


def _naive_ratio(erf, t):
    """Area ratio by direct summation of growing centred squares."""
    h, w = erf.shape
    cy, cx = h // 2, w // 2
    total = erf.sum()
    for r in range(max(h, w)):
        win = erf[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1]
        if win.sum() >= t * total * (1 - 1e-12):
            return win.size / (h * w)
    raise AssertionError('unreachable')


@pytest.mark.parametrize('k', [1, 5, 9])
def test_one_layer_erf_is_the_kernel_square(k):
    size, in_ch, out_ch = 33, 3, 4
    images = torch.randn(3, in_ch, size, size)
    erf = compute_erf(OneConv(k, in_ch, out_ch), images, batch_size=2)
    expected = np.zeros((size, size))
    c = size // 2
    # |sum over out channels of d out / d in| summed over in channels,
    # averaged over images.
    expected[c - k // 2:c + k // 2 + 1, c - k // 2:c + k // 2 + 1] = \
        in_ch * out_ch
    np.testing.assert_allclose(erf, expected, rtol=1e-6, atol=0)
    norm = normalize_erf(erf)
    np.testing.assert_allclose(norm, expected > 0, atol=1e-12)
    ratios = high_contribution_area_ratios(norm, (0.2, 0.3, 0.5, 0.99))
    for t, ratio in ratios.items():
        side = math.ceil(math.sqrt(t) * k)
        side += 1 - side % 2  # odd sides only (centred squares)
        assert ratio == pytest.approx(side * side / size**2), t
    assert ratios[0.99] == pytest.approx(k * k / size**2)


def test_area_ratio_matches_naive_summation():
    rng = np.random.default_rng(0)
    for shape in [(17, 17), (16, 24), (40, 9)]:
        erf = rng.random(shape)**4
        ratios = high_contribution_area_ratios(erf, (0.1, 0.2, 0.5, 0.99, 1))
        for t, ratio in ratios.items():
            assert ratio == pytest.approx(_naive_ratio(erf, t)), (shape, t)


def test_area_ratio_bad_input():
    with pytest.raises(ValueError, match='2-D'):
        high_contribution_area_ratios(np.ones(5))
    with pytest.raises(ValueError, match='thresholds'):
        high_contribution_area_ratios(np.ones((5, 5)), (1.5, ))
    with pytest.raises(ValueError, match='zero everywhere'):
        normalize_erf(np.zeros((4, 4)))


def _tiny_slak_ratios(kernel_sizes, images):
    torch.manual_seed(0)
    backbone, _ = build_erf_backbone(
        'slak-tiny',
        layer_scale=1.0,
        random_init='pytorch',
        overrides=dict(
            arch=dict(depths=[1, 1, 2, 1], dims=[8, 16, 24, 32]),
            width_factor=1.0,
            kernel_sizes=kernel_sizes))
    erf = compute_erf(backbone, images, batch_size=2)
    return high_contribution_area_ratios(normalize_erf(erf))


def test_area_ratio_grows_with_kernel_size():
    images = preprocess(fallback_images(2), 128)
    small = _tiny_slak_ratios((5, 5, 5, 5), images)
    medium = _tiny_slak_ratios((13, 11, 9, 7), images)
    large = _tiny_slak_ratios((31, 29, 27, 13), images)
    # Ratios move in steps of whole squares, so neighbours may tie; the
    # sum over thresholds and the 50% ratio must grow strictly.
    for t in (0.2, 0.3, 0.5):
        assert small[t] <= medium[t] <= large[t], (t, small, medium, large)
    assert small[0.5] < medium[0.5] < large[0.5]
    assert sum(small.values()) < sum(medium.values()) < sum(large.values())


def test_erf_backbone_outputs_raw_last_stage():
    backbone, _ = build_erf_backbone(
        'slak-tiny',
        overrides=dict(
            arch=dict(depths=[1, 1, 1, 1], dims=[8, 8, 8, 8]),
            width_factor=1.0,
            kernel_sizes=(7, 7, 7, 7)))
    assert backbone.out_indices == (3, )
    assert isinstance(backbone.norm3, nn.Identity)
    out = backbone(torch.randn(1, 3, 64, 64))
    assert len(out) == 1 and out[0].shape == (1, 8, 2, 2)
    # A LayerNorm output would make the channel sum constant; raw is not.
    assert out[0].sum(1).std() > 0


def test_fallback_images_are_deterministic_and_varied():
    a = fallback_images(20)
    b = fallback_images(20)
    assert len(a) == 20
    for x, y in zip(a, b):
        assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3
        np.testing.assert_array_equal(x, y)
    # crops/flips differ from the originals
    assert a[13].shape != a[0].shape or not np.array_equal(a[13], a[0])
    batch = preprocess(a[:3], 64)
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.float32
    with pytest.raises(ValueError):
        fallback_images(0)


def test_load_images_from_folder(tmp_path):
    from PIL import Image
    for i in range(3):
        Image.fromarray(np.full((20 + i, 30, 3), 40 * i,
                                np.uint8)).save(tmp_path / f'{i}.png')
    imgs = load_images(str(tmp_path), 2)
    assert len(imgs) == 2 and imgs[1].shape == (21, 30, 3)
    assert imgs[1][0, 0, 0] == 40
    with pytest.raises(ValueError, match='fewer'):
        load_images(str(tmp_path), 5)
    with pytest.raises(FileNotFoundError):
        load_images(str(tmp_path / 'missing'), 1)


def _tiny_slak_config(tmp_path):
    cfg = tmp_path / 'tiny_slak.py'
    cfg.write_text(
        "custom_imports = dict(imports=['mmslak'])\n"
        "model = dict(type='ImageClassifier', backbone=dict(\n"
        "    type='mmpretrain.SLaK', arch=dict(depths=[1, 1, 1, 1],\n"
        "    dims=[8, 8, 8, 8]), width_factor=1.0,\n"
        '    kernel_sizes=(13, 11, 9, 7)))\n')
    return cfg


def test_erf_cli_compares_two_models(tmp_path):
    cfg = _tiny_slak_config(tmp_path)
    out = tmp_path / 'out'
    erf_tool = load_tool('erf')
    erf_tool.main([
        str(cfg),
        str(cfg), '--names', 'a', 'b', '--size', '64', '--num-images', '2',
        '--device', 'cpu', '--out-dir',
        str(out)
    ])
    assert (out / 'erf.png').stat().st_size > 1000
    meta = json.loads((out / 'erf_ratios.json').read_text())
    assert set(meta['models']) == {'a', 'b'}
    erf = np.load(out / 'a.npy')
    assert erf.shape == (64, 64) and (erf >= 0).all()
    # same config and seed: same ERF
    np.testing.assert_allclose(erf, np.load(out / 'b.npy'))
    ratios = meta['models']['a']['area_ratio']
    assert 0 < ratios['0.2'] < ratios['0.5'] < ratios['0.99'] <= 1


def test_erf_backbone_from_unprefixed_upstream_config(tmp_path):
    """An mmpretrain config naming 'ConvNeXt' without a scope prefix: the
    classifier's GAP must still be switched off."""
    cfg = tmp_path / 'tiny_convnext.py'
    cfg.write_text("default_scope = 'mmpretrain'\n"
                   "model = dict(type='ImageClassifier', backbone=dict(\n"
                   "    type='ConvNeXt', arch=dict(depths=[1, 1, 1, 1],\n"
                   '    channels=[8, 8, 8, 8])))\n')
    backbone, scope = build_erf_backbone(str(cfg), layer_scale=1.0)
    assert scope == 'mmpretrain' and not backbone.gap_before_final_norm
    assert isinstance(backbone.norm3, nn.Identity)
    assert backbone.stages[0][0].gamma.detach().eq(1.0).all()
    erf = compute_erf(backbone, torch.randn(1, 3, 64, 64))
    assert erf.shape == (64, 64) and erf.max() > 0


def test_erf_cli_progress_and_same_result(tmp_path, monkeypatch, capsys):
    """A bar counting the images on a terminal (stderr), none with
    --quiet or off a terminal; the ERF is the same either way."""

    class FakeTerminal(io.StringIO):

        def isatty(self):
            return True

    cfg = _tiny_slak_config(tmp_path)
    erf_tool = load_tool('erf')
    erfs = []
    for extra, terminal in (([], True), (['--quiet'], True), ([], False)):
        term = FakeTerminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, 'stderr', term)
        out = tmp_path / f'out{len(erfs)}'
        erf_tool.main([
            str(cfg), '--names', 'a', '--size', '64', '--num-images', '3',
            '--batch-size', '2', '--device', 'cpu', '--out-dir',
            str(out), *extra
        ])
        bar = [line for line in term.getvalue().split('\r') if '] ' in line]
        if terminal and not extra:
            # batches of 2 and 1 image
            assert [re.search(r'\] (\d/3), ', b).group(1)
                    for b in bar] == ['0/3', '2/3', '3/3'], bar
        else:
            assert bar == [], term.getvalue()
        erfs.append(np.load(out / 'a.npy'))
    assert '3 images' in capsys.readouterr().out
    # the same ERF as without the tool (same seed and init)
    torch.manual_seed(0)
    backbone, _ = build_erf_backbone(str(cfg), layer_scale=1.0)
    images = preprocess(load_images(None, 3), 64)
    expected = compute_erf(backbone, images, batch_size=2)
    for erf in erfs:
        np.testing.assert_array_equal(erf, expected)
