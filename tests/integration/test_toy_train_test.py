"""Train -> test through tools/train.py and tools/test.py on the generated
toy datasets, one run per task family: the demo's configs (the real configs
with data root, image scale and model width overridden) on a shorter
schedule than ``make demo`` runs (a third to a half of its iterations, so
that the suite stays within its time budget).

Each asserts that the metric was computed and beats a chance level computed
independently from the toy data by a clear margin (measured 2026-12-04 on
this schedule, one thread: mIoU 40.2 against a chance of 20.7, VOC mAP
0.40, COCO box / mask AP50 0.17 / 0.20; random boxes score ~0)."""
import glob
import json
import os
import os.path as osp

import numpy as np
import pytest
from child_process import REPO, run_in_checkout
from PIL import Image

pytestmark = pytest.mark.slow


def _epochs(max_epochs, lr_step):
    """An epoch-based demo shortened to ``max_epochs``, the lr stepped
    down once at ``lr_step``, the warm-up shrunk to 10 iterations."""
    return f"""
max_epochs = {max_epochs}
param_scheduler = [
    dict(_base_.param_scheduler[0], end=10),
    dict(_base_.param_scheduler[1], end=max_epochs, milestones=[{lr_step}]),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
"""


# The demo schedules shortened: (config, override). Iteration-based ADE:
# 80 of the demo's 200 iterations; epoch-based VOC / COCO: 4 of 8 and 3 of
# 6 epochs.
SHORT = {
    'ade': ('upernet_slak-demo_toy-ade.py', """
iters = 80
param_scheduler = [
    dict(_base_.param_scheduler[0], end=10),
    dict(_base_.param_scheduler[1], begin=10, end=iters),
]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(checkpoint=dict(interval=iters))
"""),
    'voc': ('faster-rcnn_slak-demo_toy-voc.py', _epochs(4, 3)),
    'coco': ('cascade-mask-rcnn_slak-demo_toy-coco.py', _epochs(3, 2)),
}


def _run(script, *args, env=None):
    proc = run_in_checkout(script, *args, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy'))
    _run('tools/dataset_converters/make_toy_datasets.py', '--out', root)
    return root


def train_then_test(task, tmp_path, toy_root):
    demo, override = SHORT[task]
    config = tmp_path / f'{task}_short.py'
    base = osp.join(REPO, 'configs', 'demo', demo)
    config.write_text(f'_base_ = [{base!r}]\n' + override)
    config, work_dir = str(config), str(tmp_path / task)
    env = dict(os.environ, MMSLAK_TOY_DATA=toy_root)
    _run('tools/train.py', config, '--work-dir', work_dir, env=env)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    show_dir = osp.join(work_dir, 'vis')
    _run(
        'tools/test.py',
        config,
        ckpt,
        '--work-dir',
        work_dir,
        '--show-dir',
        show_dir,
        env=env)
    logs = [
        p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
        if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))
    ]
    with open(max(logs, key=osp.getmtime)) as f:
        metrics = json.loads(f.readlines()[-1])
    pictures = [
        p for p in glob.glob(osp.join(show_dir, '**', '*'), recursive=True)
        if p.endswith(('.png', '.jpg'))
    ]
    assert pictures, 'no visualisation written'
    return metrics


def background_only_miou(toy_root):
    """mIoU (%) of predicting the background class everywhere."""
    ann_dir = osp.join(toy_root, 'ade', 'ADEChallengeData2016', 'annotations',
                       'validation')
    labels = np.concatenate([
        np.asarray(Image.open(p)).ravel()
        for p in sorted(glob.glob(osp.join(ann_dir, '*.png')))
    ])
    labels = labels[labels != 0]  # 0 is ignored (reduce_zero_label)
    present = np.unique(labels)
    bg_iou = (labels == 1).mean()
    return 100 * bg_iou / len(present)


def test_segmentation_upernet(toy_root, tmp_path):
    metrics = train_then_test('ade', tmp_path, toy_root)
    chance = background_only_miou(toy_root)
    assert 15 < chance < 35
    assert metrics['mIoU'] > chance + 10, (metrics, chance)


def test_detection_faster_rcnn_voc(toy_root, tmp_path):
    metrics = train_then_test('voc', tmp_path, toy_root)
    # random boxes score ~0 mAP@0.5 on these objects
    assert metrics['pascal_voc/mAP'] > 0.25, metrics


def test_instance_seg_cascade_mask_rcnn_coco(toy_root, tmp_path):
    metrics = train_then_test('coco', tmp_path, toy_root)
    # chance (random boxes / masks) is ~0
    assert metrics['coco/bbox_mAP_50'] > 0.1, metrics
    assert metrics['coco/segm_mAP_50'] > 0.1, metrics
