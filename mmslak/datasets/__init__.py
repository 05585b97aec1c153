"""Checked versions of the upstream datasets the configs use, and the
per-file checks behind them and ``tools/misc/check_dataset.py``.

``import mmslak`` imports it (registering, as each class is defined, the
checked datasets in mmseg's / mmdet's ``DATASETS``), so a config that lists
only ``mmslak`` in ``custom_imports`` can use them.
"""
from .base import LoadCheckMixin, NonEmptyMixin
from .checks import (DataProblem, DatasetError, coco_problems, image_problems,
                     raise_problems, seg_label_problems, size_problems,
                     voc_xml_problems)
from .det import (CheckedCOCO, CheckedCocoDataset, CheckedVOCDataset,
                  DeclaredSizeCheckMixin)
from .seg import CheckedADE20KDataset, SegLabelCheckMixin

__all__ = [
    'NonEmptyMixin', 'LoadCheckMixin', 'DataProblem', 'DatasetError',
    'coco_problems', 'image_problems', 'raise_problems', 'seg_label_problems',
    'size_problems', 'voc_xml_problems', 'CheckedCOCO', 'CheckedCocoDataset',
    'CheckedVOCDataset', 'DeclaredSizeCheckMixin', 'CheckedADE20KDataset',
    'SegLabelCheckMixin'
]
