import importlib.util
from pathlib import Path

import pytest
import torch

from mmslak.analysis import build_model, measure_throughput, switch_to_deploy

REPO = Path(__file__).resolve().parents[2]
TINY_CLASSIFIER = (
    "custom_imports = dict(imports=['mmslak'])\n"
    "model = dict(type='mmpretrain.ImageClassifier', backbone=dict(\n"
    "    type='mmpretrain.SLaK', arch=dict(depths=[1, 1, 1, 1],\n"
    '    dims=[8, 8, 8, 8]), width_factor=1.0, kernel_sizes=(13, 11, 9, 7)),\n'
    "    head=dict(type='mmpretrain.LinearClsHead', num_classes=10,\n"
    '              in_channels=8))\n')


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'_tool_{name}', REPO / 'tools' / 'analysis' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_throughput_counts_calls_and_images():
    calls = []
    clock = [0.]

    def forward(x):
        calls.append(x.shape[0])

    # a fake clock advancing 0.5 s per perf_counter() call makes the rate
    # exactly computable: 2 timed calls of 4 images between two readings.
    def fake_perf_counter():
        clock[0] += 0.5
        return clock[0]

    import mmslak.analysis.throughput as tp
    real = tp.time.perf_counter
    tp.time.perf_counter = fake_perf_counter
    try:
        result = measure_throughput(
            forward, torch.zeros(4, 3, 8, 8), warmup=1, iters=2, repeats=3)
    finally:
        tp.time.perf_counter = real
    assert len(calls) == 1 + 2 * 3
    assert result['images_per_s'] == pytest.approx(4 * 2 / 0.5)
    assert result['ms_per_batch'] == pytest.approx(1000 * 0.5 / 2)
    with pytest.raises(ValueError):
        measure_throughput(forward, torch.zeros(1, 3, 8, 8), iters=0)


def test_switch_to_deploy_keeps_outputs(tmp_path):
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(TINY_CLASSIFIER)
    model = build_model(str(cfg))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x, mode='tensor')
        assert switch_to_deploy(model) == 1  # the backbone, once
        after = model(x, mode='tensor')
    assert model.backbone.deploy
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_throughput_cli_both_forms(tmp_path, monkeypatch):
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(TINY_CLASSIFIER)
    tool = load_tool('throughput')
    # which form each timing ran on, and with which settings
    timed = []
    real = tool.measure_throughput

    def spy(model, inputs, warmup, iters, repeats):
        timed.append((model.backbone.deploy, tuple(inputs.shape), warmup,
                      iters, repeats))
        return real(model, inputs, warmup, iters, repeats)

    monkeypatch.setattr(tool, 'measure_throughput', spy)
    # a clock advancing 0.5 s per reading: each repeat times 2 calls of 2
    # images in 0.5 s, so the rate is exactly 8 images/s
    clock = iter(0.5 * i for i in range(1, 1000))
    import mmslak.analysis.throughput as tp
    monkeypatch.setattr(
        tp, 'time',
        type('Clock', (), {'perf_counter': staticmethod(lambda: next(clock))}))
    summary = tool.main([
        str(cfg), '--batch-size', '2', '--shape', '64', '--deploy', 'both',
        '--warmup', '1', '--iters', '2', '--repeats', '3', '--device', 'cpu'
    ])
    assert timed == [(False, (2, 3, 64, 64), 1, 2, 3),
                     (True, (2, 3, 64, 64), 1, 2, 3)]
    assert set(summary['results']) == {'train-form', 'deploy'}
    for result in summary['results'].values():
        assert result['images_per_s'] == pytest.approx(8.0)
        assert result['all_images_per_s'] == pytest.approx([8.0] * 3)
        assert result['ms_per_batch'] == pytest.approx(250.0)
    assert summary['batch_size'] == 2 and summary['shape'] == [64, 64]


@pytest.mark.cuda
def test_throughput_cli_cuda(tmp_path):
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(TINY_CLASSIFIER)
    summary = load_tool('throughput').main([
        str(cfg), '--batch-size', '2', '--shape', '64', '--device', 'cuda',
        '--iters', '2', '--repeats', '1'
    ])
    result = summary['results']['train-form']
    # a real timing: finite, and consistent with its own ms per batch
    assert 0 < result['images_per_s'] < float('inf')
    assert result['ms_per_batch'] == pytest.approx(1000 * 2 /
                                                   result['images_per_s'])
