"""Check every sample of a config's dataset (``tools/misc/check_dataset.py``).

Each dataset config is built without its pipeline and without loading
(``lazy_init``) only to resolve its paths and classes; the files are then
read here, so one bad file does not hide the others. mmdet's COCO / VOC
datasets, mmseg's segmentation datasets and wrappers (``ConcatDataset``,
``RepeatDataset``, ...) are understood; any other dataset gets its images
checked.
"""
import copy
import json
import os.path as osp
import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple

from mmengine.fileio import list_dir_or_file, list_from_file
from mmengine.registry import DATASETS

from .checks import (DataProblem, coco_problems, image_problems,
                     seg_label_problems, voc_xml_problems)

__all__ = ['check_dataset_cfg']


def _check_coco(ds) -> Tuple[int, List[DataProblem]]:
    try:
        with open(ds.ann_file) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return 0, [DataProblem(ds.ann_file, f'cannot read as JSON: {e}')]
    problems = coco_problems(data, ds.ann_file)
    images = data.get('images', []) if isinstance(data, dict) else []
    names = {c.get('name') for c in data.get('categories', [])} \
        if isinstance(data, dict) else set()
    absent = [c for c in ds.metainfo['classes'] if c not in names]
    if names and absent:
        problems.append(
            DataProblem(
                ds.ann_file, f"dataset classes {absent[:5]} are not in "
                f"'categories' ({len(absent)} in all)"))
    for img in images:
        path = osp.join(
            ds.data_prefix.get('img', ''), str(img.get('file_name')))
        size = (img.get('height'), img.get('width'))
        problems += image_problems(path, size if all(size) else None)
    return len(images), problems


def _voc_size(xml_path: str) -> Optional[Tuple[int, int]]:
    try:
        size = ET.parse(xml_path).getroot().find('size')
        return int(size.findtext('height')), int(size.findtext('width'))
    except (ET.ParseError, AttributeError, TypeError, ValueError, OSError):
        return None


def _check_voc(ds) -> Tuple[int, List[DataProblem]]:
    try:
        img_ids = list_from_file(ds.ann_file)
    except OSError as e:
        return 0, [DataProblem(ds.ann_file, f'cannot read the id list: {e}')]
    problems = []
    for img_id in img_ids:
        xml_path = osp.join(ds.sub_data_root, ds.ann_subdir, f'{img_id}.xml')
        problems += voc_xml_problems(xml_path, ds.metainfo['classes'])
        problems += image_problems(
            osp.join(ds.sub_data_root, ds.img_subdir, f'{img_id}.jpg'),
            _voc_size(xml_path))
    return len(img_ids), problems


def _seg_sample_problems(ds, info: dict, loader) -> List[DataProblem]:
    seg_path = info['seg_map_path']
    if not osp.isfile(seg_path):
        return [
            DataProblem(
                seg_path, 'annotation file is missing (image '
                f"{info['img_path']})")
        ] + image_problems(info['img_path'])
    try:
        seg_map = loader(dict(info, seg_fields=[]))['gt_seg_map']
    except Exception as e:  # any decoder failure means unreadable
        return [DataProblem(seg_path, f'annotation does not decode: {e}')]
    return seg_label_problems(seg_map, len(
        ds.metainfo['classes']), ds.ignore_index, seg_path,
                              ds.reduce_zero_label) + image_problems(
                                  info['img_path'], seg_map.shape[:2])


def _orphan_seg_maps(ds, data_list) -> List[DataProblem]:
    ann_dir = ds.data_prefix.get('seg_map_path')
    if not ann_dir or not osp.isdir(ann_dir) or osp.isfile(ds.ann_file):
        return []  # with an ann_file list, extra files are not samples
    used = {info['seg_map_path'] for info in data_list}
    return [
        DataProblem(osp.join(ann_dir, name), 'annotation has no image')
        for name in sorted(
            list_dir_or_file(
                ann_dir,
                list_dir=False,
                suffix=ds.seg_map_suffix,
                recursive=True)) if osp.join(ann_dir, name) not in used
    ]


def _check_seg(ds) -> Tuple[int, List[DataProblem]]:
    from mmseg.datasets.transforms import LoadAnnotations
    img_dir = ds.data_prefix.get('img_path', '')
    if not osp.isdir(img_dir):
        return 0, [DataProblem(img_dir, 'image folder is missing')]
    data_list = ds.load_data_list()
    loader = LoadAnnotations()  # reduce_zero_label from each info
    problems = []
    for info in data_list:
        if info.get('seg_map_path'):
            problems += _seg_sample_problems(ds, info, loader)
        else:
            problems += image_problems(info['img_path'])
    return len(data_list), problems + _orphan_seg_maps(ds, data_list)


def _check_images(ds) -> Tuple[int, List[DataProblem]]:
    ds.full_init()
    problems = []
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        if 'img_path' in info:
            problems += image_problems(info['img_path'])
    return len(ds), problems


def _checker_for(ds):
    from mmdet.datasets import CocoDataset, XMLDataset
    from mmseg.datasets import BaseSegDataset
    for kind, check in ((CocoDataset, _check_coco), (XMLDataset, _check_voc),
                        (BaseSegDataset, _check_seg)):
        if isinstance(ds, kind):
            return check
    return _check_images


def check_dataset_cfg(cfg: dict) -> Tuple[int, List[DataProblem]]:
    """Check the dataset of config ``cfg`` (a ``*_dataloader.dataset``
    dict); returns (number of samples, problems)."""
    if 'datasets' in cfg:  # ConcatDataset and the like
        results = [check_dataset_cfg(sub) for sub in cfg['datasets']]
        return (sum(n for n, _ in results),
                [p for _, found in results for p in found])
    if 'dataset' in cfg:  # RepeatDataset, ClassBalancedDataset, ...
        return check_dataset_cfg(cfg['dataset'])
    cfg = copy.deepcopy(dict(cfg))
    cfg.update(pipeline=[], lazy_init=True)
    ds = DATASETS.build(cfg)
    root = ds.data_root or ds.ann_file or str(dict(ds.data_prefix))
    try:
        num, problems = _checker_for(ds)(ds)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return 0, [DataProblem(root, f'{type(e).__name__}: {e}')]
    if num == 0:
        problems.insert(0, DataProblem(root, f'no samples found under {root}'))
    return num, problems
