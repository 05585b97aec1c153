"""COCO and VOC datasets whose annotation files are checked on loading.

mmdet drops COCO boxes with a negative size without a word, fails with a
bare ``KeyError: 'bbox'`` or an XML ParseError naming no file, and tests
on a COCO file without ``annotations`` with exit status 0; these datasets
raise :class:`~mmslak.datasets.DatasetError` naming the file and the
annotation id instead. An image whose size differs from the one its
annotation declares (COCO ``width`` / ``height``, VOC ``<size>``), on
which mmdet trains and tests with the boxes in another frame than the
image (and drops COCO boxes outside the declared size) without a word,
stops loading naming both.
"""
from typing import Tuple

from mmdet.datasets import CocoDataset, VOCDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS

from .base import LoadCheckMixin
from .checks import (coco_problems, raise_problems, size_problems,
                     voc_xml_problems)

__all__ = [
    'DeclaredSizeCheckMixin', 'CheckedCOCO', 'CheckedCocoDataset',
    'CheckedVOCDataset'
]


class DeclaredSizeCheckMixin(LoadCheckMixin):
    """For an mmdet dataset whose samples carry the image ``height`` and
    ``width`` its annotation declares: the loaded image (``ori_shape``,
    compared as ``LoadImageFromFile`` sets it, before any resize) has that
    size, else :class:`~mmslak.datasets.DatasetError` names the annotation,
    the image and both sizes; an empty dataset says ``no samples found
    under <root>``."""

    LOADED_KEY = 'ori_shape'

    def declared_in(self, results: dict) -> Tuple[str, str]:
        """(file, what) that declares the size of ``results``' image."""
        raise NotImplementedError

    def check_loaded(self, results: dict) -> None:
        declared = (results.get('height'), results.get('width'))
        if None in declared:
            return
        file, what = self.declared_in(results)
        raise_problems(
            size_problems(file, what, declared,
                          results.get('img_path', '<no img_path>'),
                          results['ori_shape']))


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
class CheckedCocoDataset(DeclaredSizeCheckMixin, CocoDataset):
    """mmdet's ``CocoDataset`` that refuses an instances file without
    ``annotations`` (so not for test-dev image-info files: use
    ``CocoDataset`` with ``format_only`` there), annotations without
    ``bbox`` or ids, boxes that are not 4 numbers or have a negative width
    or height, an image of another size than its ``width`` / ``height``
    and an empty dataset."""

    COCOAPI = CheckedCOCO

    def declared_in(self, results: dict) -> Tuple[str, str]:
        return self.ann_file, f"image id {results.get('img_id')}: size"


@DATASETS.register_module()
class CheckedVOCDataset(DeclaredSizeCheckMixin, VOCDataset):
    """mmdet's ``VOCDataset`` that refuses a malformed annotation XML (or
    one with an object lacking a name or a valid ``<bndbox>``) naming the
    file, an image of another size than the ``<size>`` of its XML, and an
    empty dataset."""

    def declared_in(self, results: dict) -> Tuple[str, str]:
        return results.get('xml_path', '<no xml_path>'), '<size>'

    def parse_data_info(self, img_info: dict):
        raise_problems(voc_xml_problems(img_info['xml_path']))
        return super().parse_data_info(img_info)
