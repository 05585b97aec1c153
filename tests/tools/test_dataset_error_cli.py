"""A :class:`~mmslak.datasets.DatasetError` inside ``tools/test.py`` /
``tools/train.py`` (child processes of this checkout): exit status 1 and
one ``error:`` line naming the file and the value, no traceback; also when
a DataLoader worker re-raises it inside its traceback text."""
import glob
import json
import os.path as osp

import numpy as np
import torch
from PIL import Image

from mmslak.cli.errors import dataset_error_line

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ADE_CFG = osp.join(REPO, 'configs/demo/upernet_slak-demo_toy-ade.py')
COCO_CFG = osp.join(REPO,
                    'configs/demo/cascade-mask-rcnn_slak-demo_toy-coco.py')
HEADER = ('1 invalid annotation(s) (run tools/misc/check_dataset.py CONFIG '
          'for the full list):')


def test_dataset_error_line_direct_and_from_a_worker():
    message = f'{HEADER}\n  /d/a.png: label value(s) [179] outside [0, 150)'
    expected = ('1 invalid annotation(s) (run tools/misc/check_dataset.py '
                'my.py for the full list): /d/a.png: label value(s) [179] '
                'outside [0, 150)')
    assert dataset_error_line(message, 'my.py') == expected
    # torch's ExceptionWrapper.reraise: DatasetError(<traceback text>)
    worker = ('Caught DatasetError in DataLoader worker process 0.\n'
              'Original Traceback (most recent call last):\n'
              '  File "x.py", line 3, in f\n    raise_problems(p)\n'
              f'mmslak.datasets.checks.DatasetError: {message}\n')
    assert dataset_error_line(worker, 'my.py') == expected
    assert dataset_error_line('no samples found under /r') == \
        'no samples found under /r'


def _error_lines(proc):
    assert proc.returncode == 1, proc.output[-3000:]
    assert 'Traceback' not in proc.output, proc.output[-3000:]
    lines = [
        line for line in proc.stderr.splitlines() if line.startswith('error')
    ]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_test_tool_coco_negative_box(run_tool, toy, tmp_path):
    ann = osp.join(toy, 'coco', 'annotations', 'instances_val2017.json')
    with open(ann) as f:
        coco = json.load(f)
    bad = coco['annotations'][0]
    bad['bbox'][2] = -5.0
    with open(ann, 'w') as f:
        json.dump(coco, f)
    ckpt = str(tmp_path / 'empty.pth')
    torch.save({'state_dict': {}, 'meta': {}}, ckpt)
    proc = run_tool(
        'tools/test.py',
        COCO_CFG,
        ckpt,
        '--work-dir',
        'work',
        env=dict(MMSLAK_TOY_DATA=toy))
    line = _error_lines(proc)
    assert line.startswith('error: invalid dataset: 1 invalid annotation')
    assert f'check_dataset.py {COCO_CFG} for the full list' in line
    assert f'{ann}: annotation id {bad["id"]}: bbox {bad["bbox"]} has a ' \
        'negative width or height' in line


def test_test_tool_ade_label_of_another_size(run_tool, toy, tmp_path):
    """Upstream: an IndexError inside IoUMetric, naming no file."""
    name = 'ADE_valid_00000000'
    ade = osp.join(toy, 'ade', 'ADEChallengeData2016')
    ann = osp.join(ade, 'annotations', 'validation', name + '.png')
    img = osp.join(ade, 'images', 'validation', name + '.jpg')
    Image.open(ann).resize((64, 48), Image.NEAREST).save(ann)
    w, h = Image.open(img).size
    ckpt = str(tmp_path / 'empty.pth')
    torch.save({'state_dict': {}, 'meta': {}}, ckpt)
    proc = run_tool(
        'tools/test.py',
        ADE_CFG,
        ckpt,
        '--allow-partial-load',  # the weights do not matter here
        '--work-dir',
        'work',
        env=dict(MMSLAK_TOY_DATA=toy))
    line = _error_lines(proc)
    assert line.startswith('error: invalid dataset: 1 invalid annotation')
    assert f'{ann}: annotation is 64x48 (WxH) but its image {img} is ' \
        f'{w}x{h}' in line


def test_train_tool_label_out_of_range_in_a_worker(run_tool, toy):
    paths = sorted(
        glob.glob(
            osp.join(toy, 'ade', 'ADEChallengeData2016', 'annotations',
                     'training', '*.png')))
    for path in paths:  # every sample, so the first batch has one
        label = np.array(Image.open(path))
        label[:] = 180  # 180 -> 179 after reduce_zero_label, >= 150
        Image.fromarray(label).save(path)
    proc = run_tool(
        'tools/train.py',
        ADE_CFG,
        '--work-dir',
        'work',
        '--cfg-options',
        'train_cfg.max_iters=1',
        'train_dataloader.num_workers=1',
        env=dict(MMSLAK_TOY_DATA=toy))
    assert 'Caught DatasetError in DataLoader worker' not in proc.output
    line = _error_lines(proc)
    assert line.startswith('error: invalid dataset: 1 invalid annotation')
    assert any(f'{path}: label value(s) [179] outside [0, 150)' in line
               for path in paths), line
    assert 'value(s) [180] in the file' in line
