"""Train -> test through tools/train.py and tools/test.py on the generated
toy datasets, one run per task family (the demo's configs: the real configs
with data root, image scale, iterations and model width overridden).

Each asserts that the metric was computed and beats a chance level computed
independently from the toy data."""
import glob
import json
import os
import os.path as osp

import numpy as np
import pytest
from child_process import run_in_checkout
from PIL import Image

pytestmark = pytest.mark.slow


def _run(script, *args, env=None):
    proc = run_in_checkout(script, *args, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('toy'))
    _run('tools/dataset_converters/make_toy_datasets.py', '--out', root)
    return root


def train_then_test(config, work_dir, toy_root, extra=()):
    env = dict(os.environ, MMSLAK_TOY_DATA=toy_root)
    _run('tools/train.py', config, '--work-dir', work_dir, *extra, env=env)
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
    metrics = train_then_test('configs/demo/upernet_slak-demo_toy-ade.py',
                              str(tmp_path / 'seg'), toy_root)
    chance = background_only_miou(toy_root)
    assert 15 < chance < 35
    assert metrics['mIoU'] > chance + 20, (metrics, chance)


def test_detection_faster_rcnn_voc(toy_root, tmp_path):
    metrics = train_then_test('configs/demo/faster-rcnn_slak-demo_toy-voc.py',
                              str(tmp_path / 'voc'), toy_root)
    # random boxes score ~0 mAP@0.5 on these objects
    assert metrics['pascal_voc/mAP'] > 0.5, metrics


def test_instance_seg_cascade_mask_rcnn_coco(toy_root, tmp_path):
    metrics = train_then_test(
        'configs/demo/cascade-mask-rcnn_slak-demo_toy-coco.py',
        str(tmp_path / 'coco'), toy_root)
    # chance (random boxes / masks) is ~0
    assert metrics['coco/bbox_mAP_50'] > 0.15, metrics
    assert metrics['coco/segm_mAP_50'] > 0.15, metrics
