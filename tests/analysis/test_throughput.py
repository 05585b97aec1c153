import importlib.util
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmslak.analysis import measure_throughput, switch_to_deploy
from mmslak.apis import build_model
from mmslak.ops import timing
from mmslak.ops.timing import time_fn

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


class FakeTimer:
    """Stands in for torch.utils.benchmark.Timer: runs the statement's
    ``fn`` ``number`` times and reports that the block took 0.5 s."""
    made = []

    def __init__(self, stmt, globals, num_threads):
        assert stmt == 'fn()'
        self.fn = globals['fn']
        FakeTimer.made.append(num_threads)

    def timeit(self, number):
        for _ in range(number):
            self.fn()
        return SimpleNamespace(mean=0.5 / number, median=0.5 / number)

    def blocked_autorange(self, min_run_time):
        self.fn()
        return SimpleNamespace(median=len(FakeTimer.made) / 10)


@pytest.fixture
def fake_timer(monkeypatch):
    FakeTimer.made = []
    monkeypatch.setattr(timing, 'Timer', FakeTimer)
    return FakeTimer


def test_measure_throughput_counts_calls_and_images(fake_timer):
    calls = []

    def forward(x):
        calls.append(x.shape[0])

    # each repeat: one block of 2 timed calls of 4 images in 0.5 s
    result = measure_throughput(
        forward, torch.zeros(4, 3, 8, 8), warmup=1, iters=2, repeats=3)
    assert len(calls) == 1 + 2 * 3
    assert result['images_per_s'] == pytest.approx(4 * 2 / 0.5)
    assert result['ms_per_batch'] == pytest.approx(1000 * 0.5 / 2)
    assert fake_timer.made == [torch.get_num_threads()] * 3
    with pytest.raises(ValueError):
        measure_throughput(forward, torch.zeros(1, 3, 8, 8), iters=0)


def test_time_fn_runs_on_the_callers_threads_and_times_real_calls():
    """The real Timer: the call runs with the caller's thread count (the
    Timer's default is 1), and a 20 ms sleep times as at least 20 ms."""
    seen = []

    def fn():
        seen.append(torch.get_num_threads())
        time.sleep(0.02)

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = time_fn(fn, number=2)
        assert len(seen) >= 2 and set(seen) == {2}
        assert 0.02 <= m.mean < 0.5
        assert 0.02 <= time_fn(fn, number=1).mean < 0.5
        seen.clear()
        # blocked_autorange: by default a call this long runs twice (the
        # block-size estimate, then one timed block), so timing is cheap
        assert 0.02 <= time_fn(fn).median < 0.5
        assert 2 <= len(seen) <= 3
    finally:
        torch.set_num_threads(old)
    with pytest.raises(ValueError, match='number'):
        time_fn(fn, number=0)


def test_benchmark_times_round_robin_through_time_fn(fake_timer, capsys):
    """The benchmark's rounds run the closures in turn (a, b, a, b, ...),
    each timed through the one helper (the fake Timer's k-th timing
    reports k / 10 s), and report the median or the minimum per closure."""
    tool = load_tool('benchmark')
    order = []
    fns = dict(a=lambda: order.append('a'), b=lambda: order.append('b'))
    med = tool.time_round_robin(fns, 3, 'test')
    assert order == ['a', 'b'] * 3
    assert med == pytest.approx(dict(a=0.3,
                                     b=0.4))  # timings 1, 3, 5 / 2, 4, 6
    assert 'timing test' in capsys.readouterr().out
    args = tool.parse_args(['--models', 'slak_deploy', '--stat', 'min'])
    assert args.models == ['slak', 'slak_deploy', 'convnext']
    assert args.train_sizes == [224, 512] and args.stat == 'min'
    with pytest.raises(SystemExit):  # a training size that is not timed
        tool.parse_args(['--sizes', '224', '--train-sizes', '512'])
    tool.STAT['name'] = 'min'
    try:
        assert tool.time_round_robin(fns, 3) == pytest.approx(
            dict(a=0.7, b=0.8))  # timings 7, 9, 11 / 8, 10, 12
    finally:
        tool.STAT['name'] = 'median'


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
    # each repeat times one block of 2 calls of 2 images in 0.5 s (the fake
    # Timer), so the rate is exactly 8 images/s
    monkeypatch.setattr(timing, 'Timer', FakeTimer)
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
