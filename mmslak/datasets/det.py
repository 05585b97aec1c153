"""COCO and VOC datasets whose annotation files are checked on loading.

mmdet drops COCO boxes with a negative size without a word, fails with a
bare ``KeyError: 'bbox'`` or an XML ParseError naming no file, and tests
on a COCO file without ``annotations`` with exit status 0; these datasets
raise :class:`~mmslak.datasets.DatasetError` naming the file and the
annotation id instead.
"""
from mmdet.datasets import CocoDataset, VOCDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS

from .base import NonEmptyMixin
from .checks import coco_problems, raise_problems, voc_xml_problems

__all__ = ['CheckedCOCO', 'CheckedCocoDataset', 'CheckedVOCDataset']


class CheckedCOCO(COCO):
    """mmdet's COCO API validating the file (:func:`coco_problems`) before
    indexing it."""

    def __init__(self, annotation_file=None):
        self._source = annotation_file
        super().__init__(annotation_file)

    def createIndex(self):
        raise_problems(coco_problems(self.dataset, self._source))
        super().createIndex()


@DATASETS.register_module()
class CheckedCocoDataset(NonEmptyMixin, CocoDataset):
    """mmdet's ``CocoDataset`` that refuses an instances file without
    ``annotations`` (so not for test-dev image-info files: use
    ``CocoDataset`` with ``format_only`` there), annotations without
    ``bbox`` or ids, boxes that are not 4 numbers or have a negative width
    or height, and an empty dataset."""

    COCOAPI = CheckedCOCO


@DATASETS.register_module()
class CheckedVOCDataset(NonEmptyMixin, VOCDataset):
    """mmdet's ``VOCDataset`` that refuses a malformed annotation XML (or
    one with an object lacking a name or a valid ``<bndbox>``) naming the
    file, and an empty dataset."""

    def parse_data_info(self, img_info: dict):
        raise_problems(voc_xml_problems(img_info['xml_path']))
        return super().parse_data_info(img_info)
