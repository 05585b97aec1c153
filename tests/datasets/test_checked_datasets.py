"""The checked datasets the configs use: each planted fault stops loading
with an error naming the file (and the annotation id / label value) where
the upstream dataset passes silently or fails without naming it."""
import json
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from mmslak.datasets import (CheckedADE20KDataset, CheckedCocoDataset,
                             CheckedVOCDataset, DatasetError)

ADE = 'ade/ADEChallengeData2016'
SEG_TRAIN = [  # the configs' order: load, then resize and crop both
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(512, 128),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=(64, 64)),
    dict(type='PackSegInputs')
]
SEG_TEST = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]


def _ade(cls, toy, pipeline, split='training'):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return cls(
            data_root=osp.join(toy, ADE),
            data_prefix=dict(
                img_path=f'images/{split}',
                seg_map_path=f'annotations/{split}'),
            pipeline=pipeline)


@pytest.mark.parametrize('pipeline', [SEG_TRAIN, SEG_TEST])
def test_seg_label_out_of_range(toy, pipeline):
    from mmseg.datasets import ADE20KDataset
    path = osp.join(toy, ADE, 'annotations', 'training',
                    'ADE_train_00000001.png')
    label = np.array(Image.open(path))
    assert _ade(CheckedADE20KDataset, toy, pipeline)[1] is not None  # clean
    label[:] = 180  # every crop sees it: raw 180 -> 179 >= 150 classes
    Image.fromarray(label).save(path)
    # upstream: no error on loading (training later fails with an
    # IndexError naming no file; IoUMetric drops the pixels silently)
    upstream = _ade(ADE20KDataset, toy, pipeline)[1]
    assert upstream['data_samples'].gt_sem_seg.data.max() == 179
    checked = _ade(CheckedADE20KDataset, toy, pipeline)
    assert checked[0] is not None  # the other samples still load
    with pytest.raises(DatasetError) as err:
        checked[1]
    msg = str(err.value)
    assert path in msg and '[179] outside [0, 150)' in msg
    assert '[180] in the file' in msg


@pytest.mark.parametrize('pipeline', [SEG_TRAIN, SEG_TEST])
def test_seg_label_saved_as_rgb(toy, pipeline):
    """Issue 24 item 1: a 3-channel label map stops loading, naming the
    file and saying annotations are single-channel (upstream: a collate
    crash in training, an IndexError in the metric in testing)."""
    path = osp.join(toy, ADE, 'annotations', 'training',
                    'ADE_train_00000001.png')
    label = np.array(Image.open(path))
    Image.fromarray(np.stack([label] * 3, -1)).save(path)
    checked = _ade(CheckedADE20KDataset, toy, pipeline)
    with pytest.raises(DatasetError) as err:
        checked[1]
    assert path in str(err.value) and 'single-channel' in str(err.value)


@pytest.mark.parametrize('pipeline', [SEG_TRAIN, SEG_TEST])
def test_seg_label_of_another_size(toy, pipeline):
    """A label map of another size than its image stops loading, naming
    both files and both sizes (upstream: training resizes it to the
    image's size without a word, testing ends in an IndexError inside the
    metric)."""
    from mmseg.datasets import ADE20KDataset
    name = 'ADE_train_00000001'
    path = osp.join(toy, ADE, 'annotations', 'training', name + '.png')
    img_path = osp.join(toy, ADE, 'images', 'training', name + '.jpg')
    Image.open(img_path).crop((0, 0, 128, 96)).save(img_path)  # W x H
    Image.open(path).resize((64, 48), Image.NEAREST).save(path)  # half
    assert Image.open(img_path).size == (128, 96)
    sample = _ade(ADE20KDataset, toy, pipeline)[1]['data_samples']
    if pipeline is SEG_TRAIN:  # both rescaled to the same size: silent
        assert sample.gt_sem_seg.shape == sample.img_shape
    else:  # the label as loaded, the prediction at the image's size
        assert sample.gt_sem_seg.shape == (48, 64)
        assert sample.ori_shape == (96, 128)
    checked = _ade(CheckedADE20KDataset, toy, pipeline)
    assert checked[0] is not None  # the other samples still load
    with pytest.raises(DatasetError) as err:
        checked[1]
    msg = str(err.value)
    assert f'{path}: annotation is 64x48 (WxH)' in msg
    assert f'its image {img_path} is 128x96' in msg


def test_seg_ignore_index_is_valid(toy):
    path = osp.join(toy, ADE, 'annotations', 'validation',
                    'ADE_valid_00000000.png')
    label = np.array(Image.open(path))
    label[:4] = 0  # raw 0 -> 255, the ignore index
    label[4:8] = 150  # the last class (149 after reduce_zero_label)
    Image.fromarray(label).save(path)
    sample = _ade(CheckedADE20KDataset, toy, SEG_TEST, 'validation')[0]
    values = set(np.unique(sample['data_samples'].gt_sem_seg.data.numpy()))
    assert {255, 149} <= values


def test_seg_no_samples(toy):
    from mmseg.datasets import ADE20KDataset
    img_dir = osp.join(toy, ADE, 'images', 'training')
    for name in os.listdir(img_dir):
        os.remove(osp.join(img_dir, name))
    with pytest.raises(ValueError, match='at least one array'):
        _ade(ADE20KDataset, toy, SEG_TEST)  # upstream message
    with pytest.raises(DatasetError) as err:
        _ade(CheckedADE20KDataset, toy, SEG_TEST)
    assert f'no samples found under {osp.join(toy, ADE)}' in str(err.value)


def _coco(cls, toy, test_mode=False, split='train', pipeline=()):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return cls(
            data_root=osp.join(toy, 'coco'),
            ann_file=f'annotations/instances_{split}2017.json',
            data_prefix=dict(img=f'{split}2017/'),
            test_mode=test_mode,
            pipeline=list(pipeline))


def _edit_json(path, edit):
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


def test_coco_clean(toy):
    ds = _coco(CheckedCocoDataset, toy)
    assert len(ds) == 3
    assert sum(len(ds[i]['instances']) for i in range(3)) > 0


@pytest.mark.parametrize(
    'fault, expected',
    [
        (lambda d: d['annotations'][1].pop('bbox'), "id 2 has no ['bbox']"),
        (lambda d: d['annotations'][1]['bbox'].__setitem__(3, -4.0),
         'id 2: bbox [{}, {}, {}, -4.0] has a negative width or height'),
        (lambda d: d['annotations'][1].__setitem__('bbox', [1, 2, 'x', 4]),
         "id 2: bbox [1, 2, 'x', 4] is not 4 finite numbers"),
        # issue 24 item 3: polygons of < 6 or an odd count; duplicate image ids
        (lambda d: d['annotations'][1].__setitem__(
            'segmentation', [[1, 2, 3, 4]]), 'id 2: a polygon'),
        (lambda d: d['annotations'][1].__setitem__(
            'segmentation', [[1, 2, 3, 4, 5, 6, 7]]), 'id 2: a polygon'),
        (lambda d: d['images'][1].__setitem__('id', d['images'][0]['id']),
         'image id {} appears more than once'),
    ])
def test_coco_bad_annotation(toy, fault, expected):
    path = osp.join(toy, 'coco', 'annotations', 'instances_train2017.json')
    data = _edit_json(path, fault)
    box = data['annotations'][1]['bbox'] if 'bbox' in data['annotations'][
        1] else []
    with pytest.raises(DatasetError) as err:
        _coco(CheckedCocoDataset, toy)
    assert path in str(err.value)
    assert expected.format(*box[:3]) in str(err.value) or \
        expected.format(data['images'][0]['id']) in str(err.value)


def test_coco_negative_box_dropped_upstream(toy):
    from mmdet.datasets import CocoDataset
    path = osp.join(toy, 'coco', 'annotations', 'instances_train2017.json')
    clean = sum(len(_coco(CocoDataset, toy)[i]['instances']) for i in range(3))
    _edit_json(path,
               lambda d: d['annotations'][1]['bbox'].__setitem__(2, -4.0))
    dropped = sum(
        len(_coco(CocoDataset, toy)[i]['instances']) for i in range(3))
    assert dropped == clean - 1  # upstream: silently one box fewer
    with pytest.raises(DatasetError, match='annotation id 2: bbox'):
        _coco(CheckedCocoDataset, toy)


def test_coco_without_annotations_for_testing(toy):
    from mmdet.datasets import CocoDataset
    path = osp.join(toy, 'coco', 'annotations', 'instances_val2017.json')
    _edit_json(path, lambda d: d.pop('annotations'))
    assert len(_coco(CocoDataset, toy, True, 'val')) == 2  # upstream: fine
    with pytest.raises(DatasetError) as err:
        _coco(CheckedCocoDataset, toy, True, 'val')
    assert path in str(err.value)
    assert "has no ['annotations']" in str(err.value)


def _voc(cls, toy, pipeline=()):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return cls(
            data_root=osp.join(toy, 'VOCdevkit'),
            ann_file='VOC2007/ImageSets/Main/trainval.txt',
            data_prefix=dict(sub_data_root='VOC2007/'),
            pipeline=list(pipeline))


def test_voc_malformed_xml(toy):
    from mmdet.datasets import VOCDataset
    assert len(_voc(CheckedVOCDataset, toy)) == 2  # clean
    path = osp.join(toy, 'VOCdevkit', 'VOC2007', 'Annotations',
                    '2007_trainval_000001.xml')
    with open(path, 'a') as f:
        f.write('<object><name>car</name')  # unterminated tag
    with pytest.raises(Exception) as upstream:
        _voc(VOCDataset, toy)
    assert path not in str(upstream.value)  # upstream names no file
    with pytest.raises(DatasetError) as err:
        _voc(CheckedVOCDataset, toy)
    assert path in str(err.value) and 'malformed XML' in str(err.value)


def _set_voc_width(toy, width):
    path = osp.join(toy, 'VOCdevkit', 'VOC2007', 'Annotations',
                    '2007_trainval_000001.xml')
    with open(path) as f:
        text = f.read()
    start = text.index('<width>') + len('<width>')
    with open(path, 'w') as f:
        f.write(text[:start] + str(width) + text[text.index('</width>'):])
    img = osp.join(toy, 'VOCdevkit', 'VOC2007', 'JPEGImages',
                   '2007_trainval_000001.jpg')
    return path, '<size>', img


def _set_coco_width(toy, width):
    path = osp.join(toy, 'coco', 'annotations', 'instances_train2017.json')
    data = _edit_json(path,
                      lambda d: d['images'][1].__setitem__('width', width))
    img = osp.join(toy, 'coco', 'train2017', data['images'][1]['file_name'])
    return path, f"image id {data['images'][1]['id']}: size", img


@pytest.mark.parametrize('kind', ['voc', 'coco'])
def test_det_image_of_another_size_than_declared(toy, kind):
    """An image whose size differs from the one its annotation declares
    (VOC ``<size>``, COCO ``width`` / ``height``) stops loading, naming
    the annotation, the image and both sizes, as soon as the image is
    loaded (upstream: loads, boxes in another frame than the image)."""
    from mmdet.datasets import CocoDataset, VOCDataset
    upstream_cls, cls, plant = dict(
        voc=(VOCDataset, CheckedVOCDataset, _set_voc_width),
        coco=(CocoDataset, CheckedCocoDataset, _set_coco_width))[kind]
    build = _voc if kind == 'voc' else _coco

    def load(dataset_cls, idx):
        ds = build(dataset_cls, toy, pipeline=[dict(type='LoadImageFromFile')])
        return ds[idx]

    assert load(cls, 1)['ori_shape'] is not None  # clean: no error
    ann, what, img = plant(toy, 100)
    img_w, img_h = Image.open(img).size
    assert img_w != 100
    upstream = load(upstream_cls, 1)
    assert upstream['img_path'] == img  # the planted sample, loaded
    assert (upstream['width'], upstream['ori_shape'][1]) == (100, img_w)
    with pytest.raises(DatasetError) as err:
        load(cls, 1)
    msg = str(err.value)
    assert f'{ann}: {what} is 100x{img_h} (WxH)' in msg
    assert f'its image {img} is {img_w}x{img_h}' in msg
