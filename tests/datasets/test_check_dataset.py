"""tools/misc/check_dataset.py on the toy datasets with planted faults: one
table row per fault (file + what), exit status 1; clean data: status 0."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = 'tools/misc/check_dataset.py'
ADE_CFG = osp.join(REPO, 'configs/demo/upernet_slak-demo_toy-ade.py')
VOC_CFG = osp.join(REPO, 'configs/demo/faster-rcnn_slak-demo_toy-voc.py')
COCO_CFG = osp.join(REPO,
                    'configs/demo/cascade-mask-rcnn_slak-demo_toy-coco.py')
ADE = 'ade/ADEChallengeData2016'


def _rows(output):
    """(split, file, problem) of every table row, parsed back."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.split()[:3] == ['split', 'file', 'problem'])
    rows = []
    for line in lines[start + 1:]:
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0] in ('train', 'val', 'test'):
            rows.append(tuple(parts))
    return rows


def _check(run_tool, cfg, toy, *splits):
    return run_tool(
        TOOL, cfg, '--split', *splits, env=dict(MMSLAK_TOY_DATA=toy))


@pytest.mark.parametrize('cfg', [ADE_CFG, VOC_CFG, COCO_CFG])
def test_clean_toy_passes(run_tool, clean_toy, cfg):
    proc = _check(run_tool, cfg, clean_toy, 'train', 'test')
    assert proc.returncode == 0, proc.output[-3000:]
    assert 'no problems found in' in proc.stdout
    assert 'train: 3 samples checked' in proc.stdout


def _plant_ade(toy):
    img_dir = osp.join(toy, ADE, 'images', 'training')
    ann_dir = osp.join(toy, ADE, 'annotations', 'training')
    label_path = osp.join(ann_dir, 'ADE_train_00000000.png')
    label = np.array(Image.open(label_path))
    label[5, 5] = 200  # raw 200 -> 199 after reduce_zero_label; 150 classes
    Image.fromarray(label).save(label_path)
    with open(osp.join(img_dir, 'ADE_train_00000001.jpg'), 'w') as f:
        f.write('not an image')
    os.remove(osp.join(ann_dir, 'ADE_train_00000002.png'))
    Image.fromarray(label).save(osp.join(ann_dir, 'ADE_train_orphan.png'))
    val_path = osp.join(toy, ADE, 'annotations', 'validation',
                        'ADE_valid_00000000.png')
    val = np.array(Image.open(val_path))
    Image.fromarray(np.stack([val] * 3, -1)).save(val_path)  # RGB label
    return img_dir, ann_dir


def test_ade_faults(run_tool, toy):
    img_dir, ann_dir = _plant_ade(toy)
    proc = _check(run_tool, ADE_CFG, toy, 'train', 'test')
    assert proc.returncode == 1, proc.output[-3000:]
    rows = _rows(proc.stdout)
    expected = {
        osp.join(ann_dir, 'ADE_train_00000000.png'):
        'label value(s) [199] outside [0, 150)',
        osp.join(img_dir, 'ADE_train_00000001.jpg'):
        'image does not decode',
        osp.join(ann_dir, 'ADE_train_00000002.png'):
        'annotation file is missing',
        osp.join(ann_dir, 'ADE_train_orphan.png'):
        'annotation has no image',
        osp.join(ann_dir, '..', 'validation', 'ADE_valid_00000000.png'):
        'single-channel',
    }
    found = {osp.normpath(f): p for s, f, p in rows}
    expected = {osp.normpath(f): p for f, p in expected.items()}
    assert set(found) == set(expected), rows
    for path, what in expected.items():
        assert what in found[path], (path, found[path])
    assert '[200] in the file' in found[osp.join(ann_dir,
                                                 'ADE_train_00000000.png')]
    assert [s for s, _, _ in rows].count('test') == 1  # the RGB label
    assert '5 problem(s) in 5 file(s)' in proc.stdout


def test_voc_faults(run_tool, toy):
    ann = osp.join(toy, 'VOCdevkit', 'VOC2007', 'Annotations')
    bad_xml = osp.join(ann, '2007_trainval_000000.xml')
    with open(bad_xml) as f:
        text = f.read()
    with open(bad_xml, 'w') as f:
        f.write(text[:len(text) // 2])  # truncated: does not parse
    bad_box = osp.join(ann, '2007_trainval_000001.xml')
    with open(bad_box) as f:
        text = f.read()
    start = text.index('<xmin>') + len('<xmin>')
    with open(bad_box, 'w') as f:
        f.write(text[:start] + 'abc' + text[text.index('</xmin>'):])
    other = osp.join(toy, 'VOCdevkit', 'VOC2012', 'Annotations',
                     '2012_trainval_000000.xml')
    with open(other) as f:
        text = f.read()
    with open(other, 'w') as f:
        f.write(text.replace('<name>', '<name>unicorn', 1))
    proc = _check(run_tool, VOC_CFG, toy, 'train')
    assert proc.returncode == 1, proc.output[-3000:]
    found = {f: p for s, f, p in _rows(proc.stdout)}
    assert set(found) == {bad_xml, bad_box, other}, found
    assert 'malformed XML' in found[bad_xml]
    assert "<xmin> is missing or not a number: 'abc'" in found[bad_box]
    assert "class 'unicorn" in found[other]


def _plant_coco(toy):
    ann_file = osp.join(toy, 'coco', 'annotations', 'instances_train2017.json')
    with open(ann_file) as f:
        data = json.load(f)
    anns = data['annotations']
    del anns[0]['bbox']
    anns[1]['bbox'][2] = -5.0
    with open(ann_file, 'w') as f:
        json.dump(data, f)
    os.remove(osp.join(toy, 'coco', 'train2017', '000000000003.jpg'))
    val_file = ann_file.replace('train2017', 'val2017')
    with open(val_file) as f:
        data = json.load(f)
    del data['annotations']
    with open(val_file, 'w') as f:
        json.dump(data, f)
    return ann_file, val_file, anns[0]['id'], anns[1]['id']


def test_coco_faults(run_tool, toy):
    ann_file, val_file, no_bbox, negative = _plant_coco(toy)
    proc = _check(run_tool, COCO_CFG, toy, 'train', 'test')
    assert proc.returncode == 1, proc.output[-3000:]
    rows = _rows(proc.stdout)
    problems = [(s, f, p) for s, f, p in rows]
    assert ('train', ann_file,
            f"annotation id {no_bbox} has no ['bbox']") in problems
    assert any(f == ann_file and f'annotation id {negative}: bbox' in p
               and 'negative width or height' in p for _, f, p in rows)
    image = osp.join(toy, 'coco', 'train2017', '000000000003.jpg')
    assert ('train', image, 'image file is missing') in problems
    assert any(s == 'test' and f == val_file and "has no ['annotations']" in p
               for s, f, p in rows)
    assert len(rows) == 4, rows


def test_empty_image_folder(run_tool, toy):
    img_dir = osp.join(toy, ADE, 'images', 'training')
    for name in os.listdir(img_dir):
        os.remove(osp.join(img_dir, name))
    proc = _check(run_tool, ADE_CFG, toy, 'train')
    assert proc.returncode == 1, proc.output[-3000:]
    assert 'no samples found under' in proc.stdout
    assert 'annotation has no image' in proc.stdout
