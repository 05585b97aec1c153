"""Per-file checks of segmentation / detection annotations.

Pure functions returning :class:`DataProblem` lists, shared by the checked
datasets (which raise on them) and ``tools/misc/check_dataset.py`` (which
tabulates them). Upstream parsers either drop such entries silently or fail
with an error naming no file, hence these.
"""
import numbers
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    'DataProblem', 'DatasetError', 'raise_problems', 'seg_label_problems',
    'coco_problems', 'voc_xml_problems', 'image_problems', 'size_problems',
    'no_samples_error'
]


class DataProblem(NamedTuple):
    """One fault: the file it is in and what is wrong."""
    file: str
    what: str


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or has invalid annotations."""


def raise_problems(problems: Sequence[DataProblem], limit: int = 20) -> None:
    """Raise :class:`DatasetError` listing ``problems`` (if any)."""
    if not problems:
        return
    lines = [f'  {p.file}: {p.what}' for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f'  ... and {len(problems) - limit} more')
    raise DatasetError(f'{len(problems)} invalid annotation(s) (run '
                       'tools/misc/check_dataset.py CONFIG for the full '
                       'list):\n' + '\n'.join(lines))


def no_samples_error(root: str, details: str = '') -> DatasetError:
    return DatasetError(f'no samples found under {root}' +
                        (f' ({details})' if details else ''))


def seg_label_problems(seg_map: np.ndarray,
                       num_classes: int,
                       ignore_index: int,
                       path: str,
                       reduce_zero_label: bool = False) -> List[DataProblem]:
    """Label values outside ``[0, num_classes)`` other than
    ``ignore_index`` in a loaded (``reduce_zero_label`` applied) map, or a
    map with several channels (an RGB colour image saved as annotation)."""
    seg_map = np.asarray(seg_map)
    if np.squeeze(seg_map).ndim != 2:
        return [
            DataProblem(
                path, f'annotation has shape {seg_map.shape}: annotations are '
                'single-channel index maps (one class index per pixel), not '
                'RGB / colour images')
        ]
    values = np.unique(seg_map)
    bad = [
        int(v) for v in values
        if v != ignore_index and not 0 <= v < num_classes
    ]
    if not bad:
        return []
    what = (f'label value(s) {bad} outside [0, {num_classes}) and not the '
            f'ignore index {ignore_index}')
    if reduce_zero_label:
        what += f' (value(s) {[v + 1 for v in bad]} in the file, ' \
            'before reduce_zero_label)'
    return [DataProblem(path, what)]


def size_problems(file: str, what: str, size_hw: Sequence[int], img_path: str,
                  img_hw: Sequence[int]) -> List[DataProblem]:
    """``what`` in ``file`` (a loaded label map, a declared image size) is
    ``size_hw`` (height, width) but the image ``img_path`` decodes to
    ``img_hw``."""
    size_hw, img_hw = tuple(size_hw[:2]), tuple(img_hw[:2])
    if size_hw == img_hw:
        return []
    return [
        DataProblem(
            file, f'{what} is {size_hw[1]}x{size_hw[0]} (WxH) but its '
            f'image {img_path} is {img_hw[1]}x{img_hw[0]}')
    ]


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and np.isfinite(value)


def _coco_ann_problems(ann, image_ids: set, category_ids: set) -> List[str]:
    if not isinstance(ann, dict):
        return [f'annotation {ann!r} is not a dict']
    ann_id = ann.get('id', '<no id>')
    missing = [
        k for k in ('id', 'image_id', 'category_id', 'bbox') if k not in ann
    ]
    if missing:
        return [f'annotation id {ann_id} has no {missing}']
    out = []
    bbox = ann['bbox']
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(_is_number(v) for v in bbox)):
        out.append(f'annotation id {ann_id}: bbox {bbox!r} is not 4 finite '
                   'numbers [x, y, w, h]')
    elif bbox[2] < 0 or bbox[3] < 0:
        out.append(f'annotation id {ann_id}: bbox {bbox} has a negative '
                   'width or height')
    if ann['image_id'] not in image_ids:
        out.append(f'annotation id {ann_id}: image_id {ann["image_id"]} is '
                   "not in 'images'")
    seg = ann.get('segmentation')
    if isinstance(seg, list):  # polygons (a dict is RLE)
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                n = len(poly) if isinstance(poly, list) else poly
                out.append(f'annotation id {ann_id}: a polygon needs an even '
                           f'number (>= 6) of coordinates, got {n}')
    if ann['category_id'] not in category_ids:
        out.append(f'annotation id {ann_id}: category_id '
                   f"{ann['category_id']} is not in 'categories'")
    return out


def coco_problems(dataset: dict, ann_file: str) -> List[DataProblem]:
    """Structural faults of a COCO instances file (already json-loaded):
    missing top-level lists, annotations without ``bbox`` / ids, boxes that
    are not 4 numbers or have a negative size, dangling ids."""
    if not isinstance(dataset, dict):
        return [DataProblem(ann_file, 'is not a COCO dict')]
    missing = [
        k for k in ('images', 'annotations', 'categories') if k not in dataset
    ]
    if missing:
        return [
            DataProblem(
                ann_file, f'has no {missing} (keys: {sorted(dataset)}); an '
                "instances file needs 'images', 'annotations' and "
                "'categories'")
        ]
    image_ids = {img.get('id') for img in dataset['images']}
    seen, out = set(), []
    for img in dataset['images']:
        if img.get('id') in seen:
            out.append(
                DataProblem(
                    ann_file,
                    f"image id {img.get('id')} appears more than once "
                    "in 'images'"))
        seen.add(img.get('id'))
    category_ids = {cat.get('id') for cat in dataset['categories']}
    return out + [
        DataProblem(ann_file, what) for ann in dataset['annotations']
        for what in _coco_ann_problems(ann, image_ids, category_ids)
    ]


def _voc_box(obj: ET.Element) -> Tuple[float, ...]:
    box = obj.find('bndbox')
    if box is None:
        raise ValueError('has no <bndbox>')
    coords = []
    for key in ('xmin', 'ymin', 'xmax', 'ymax'):
        node = box.find(key)
        try:
            coords.append(float(node.text))
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f'<{key}> is missing or not a number: '
                             f'{getattr(node, "text", None)!r}') from None
    if coords[2] <= coords[0] or coords[3] <= coords[1]:
        raise ValueError(f'box {coords} has xmax <= xmin or ymax <= ymin')
    return tuple(coords)


def _voc_object_problems(obj: ET.Element, index: int,
                         classes: Optional[Iterable[str]]) -> List[str]:
    name = obj.findtext('name')
    where = f'object {index} ({name!r})'
    if not name:
        return [f'object {index} has no <name>']
    out = []
    if classes is not None and name not in classes:
        out.append(f"{where}: class {name!r} is not in the dataset's "
                   'classes (mmdet drops it)')
    try:
        _voc_box(obj)
    except ValueError as e:
        out.append(f'{where}: {e}')
    return out


def voc_xml_problems(xml_path: str,
                     classes: Optional[Sequence[str]] = None
                     ) -> List[DataProblem]:
    """A VOC annotation that does not parse, lacks ``<size>`` numbers, or
    has an object without a name or a valid ``<bndbox>``; with
    ``classes``, also objects whose name is not one of them."""
    if not osp.isfile(xml_path):
        return [DataProblem(xml_path, 'annotation file is missing')]
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        return [DataProblem(xml_path, f'malformed XML: {e}')]
    out = []
    size = root.find('size')
    if size is not None:
        for key in ('width', 'height'):
            text = size.findtext(key)
            if not (text or '').strip().isdigit():
                out.append(f'<size><{key}> is missing or not an integer: '
                           f'{text!r}')
    for i, obj in enumerate(root.findall('object')):
        out.extend(_voc_object_problems(obj, i, classes))
    return [DataProblem(xml_path, what) for what in out]


def image_problems(path: str,
                   expected_hw: Optional[Tuple[int, int]] = None
                   ) -> List[DataProblem]:
    """An image that is missing or does not decode; with ``expected_hw``,
    one whose size differs (e.g. from its annotation's)."""
    import mmcv
    if not osp.isfile(path):
        return [DataProblem(path, 'image file is missing')]
    try:
        img = mmcv.imread(path, flag='unchanged')
    except Exception as e:  # any decoder failure means unreadable
        img, err = None, f': {e}'
    else:
        err = ''
    if img is None:
        return [DataProblem(path, 'image does not decode' + err)]
    if expected_hw is not None and tuple(img.shape[:2]) != tuple(expected_hw):
        return [
            DataProblem(
                path, f'image is {img.shape[1]}x{img.shape[0]} (WxH) but its '
                f'annotation says {expected_hw[1]}x{expected_hw[0]}')
        ]
    return []
