"""tools/analysis/analyze_logs.py on the json log of a real (tiny) sparse
training run: the sparse-training scalars SparseTrainingHook logs each
iteration, checked against hand formulas, and the PNG written."""
import glob
import importlib.util
import math
import os.path as osp
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ITERS, INTERVAL, RATE = 6, 2, 0.5


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def scalars(tmp_path_factory):
    from mmengine.runner import Runner
    tiny = _load(REPO / 'tests' / 'sparse' / 'conftest.py', '_sparse_conftest')
    work = tmp_path_factory.mktemp('logs')
    runner = Runner(
        model=tiny.TinySLaKClassifier(),
        work_dir=str(work),
        train_dataloader=dict(
            dataset=tiny.RandomImages(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        train_cfg=dict(by_epoch=False, max_iters=ITERS),
        custom_hooks=[
            dict(
                type='SparseTrainingHook',
                density=0.5,
                init='erk',
                update_interval=INTERVAL,
                prune_rate=RATE)
        ],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING')
    runner.train()
    return glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]


def test_sparse_scalars_follow_the_schedule(scalars):
    tool = _load(REPO / 'tools' / 'analysis' / 'analyze_logs.py', '_logs')
    records = tool.load_json_log(scalars)
    x, rate = tool.series(records,
                          tool.resolve_key('prune_rate', records, scalars))
    assert list(x) == list(range(1, ITERS + 1))
    for i, r in zip(x, rate):  # the cosine schedule, by hand
        expected = 0.005 + 0.5 * (RATE -
                                  0.005) * (1 + math.cos(math.pi * i / ITERS))
        assert abs(r - expected) < 1e-6, (i, r, expected)
    _, density = tool.series(records, 'sparsity_density')
    assert all(abs(d - 0.5) < 0.01 for d in density), density
    _, explored = tool.series(records, 'sparsity_explored')
    # regrowth only adds explored weights; it moves after the first update
    assert all(b >= a for a, b in zip(explored, explored[1:]))
    assert explored[0] == pytest.approx(density[0], abs=1e-6)
    assert explored[-1] > explored[0]


def test_plot_curve_png(scalars, tmp_path, capsys):
    from PIL import Image
    tool = _load(REPO / 'tools' / 'analysis' / 'analyze_logs.py', '_logs')
    out = tmp_path / 'curves.png'
    assert tool.main([
        'plot_curve', scalars, '--keys', 'loss', 'density', 'prune_rate',
        'explored', '--out',
        str(out)
    ]) == 0
    text = capsys.readouterr().out
    assert text.count(f'{ITERS} points') == 4, text
    with Image.open(out) as img:
        assert img.format == 'PNG' and img.size == (800, 1040)
        assert len(img.getcolors(1 << 16) or []) > 10  # something drawn
    with pytest.raises(KeyError, match="'mIoU' is not in"):
        tool.main(['plot_curve', scalars, '--keys', 'mIoU'])
