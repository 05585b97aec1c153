"""ADE20K with its labels checked as each sample is loaded.

mmseg's cross-entropy fails on a label >= num_classes with an IndexError
naming no file, and its IoU metric leaves such pixels out of mIoU and aAcc
silently; this dataset stops with the file and the value instead.
"""
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS

from .base import NonEmptyMixin
from .checks import raise_problems, seg_label_problems

__all__ = ['SegLabelCheckMixin', 'CheckedADE20KDataset']


class SegLabelCheckMixin(NonEmptyMixin):
    """For an mmseg ``BaseSegDataset``: every label of a prepared sample
    is in ``[0, len(classes))`` or the ignore index, else
    :class:`~mmslak.datasets.DatasetError` names the file and the values;
    an empty dataset says ``no samples found under <root>``."""

    def prepare_data(self, idx):
        data = super().prepare_data(idx)
        sample = data.get('data_samples') if isinstance(data, dict) else None
        if sample is not None and 'gt_sem_seg' in sample:
            raise_problems(
                seg_label_problems(
                    sample.gt_sem_seg.data.cpu().numpy(),
                    len(self.metainfo['classes']), self.ignore_index,
                    sample.metainfo.get('seg_map_path', f'sample {idx}'),
                    self.reduce_zero_label))
        return data


@DATASETS.register_module()
class CheckedADE20KDataset(SegLabelCheckMixin, ADE20KDataset):
    """mmseg's ``ADE20KDataset`` with :class:`SegLabelCheckMixin`."""
