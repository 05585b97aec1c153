"""ADE20K with its labels checked as each sample is loaded.

mmseg's cross-entropy fails on a label >= num_classes with an IndexError
naming no file, and its IoU metric leaves such pixels out of mIoU and aAcc
silently; a label map whose size differs from its image's is resized with
the image in training (a whole run on misaligned labels) and ends in an
IndexError inside the metric in testing. This dataset stops with the file
and the values instead.
"""
from mmseg.datasets import ADE20KDataset
from mmseg.registry import DATASETS

from .base import LoadCheckMixin
from .checks import raise_problems, seg_label_problems, size_problems

__all__ = ['SegLabelCheckMixin', 'CheckedADE20KDataset']


class SegLabelCheckMixin(LoadCheckMixin):
    """For an mmseg ``BaseSegDataset``: every label map has the size of
    its image (compared as ``LoadAnnotations`` loads it, before any resize)
    and every label of a prepared sample is in ``[0, len(classes))`` or
    the ignore index, else :class:`~mmslak.datasets.DatasetError` names
    the file and the sizes / values; an empty dataset says ``no samples
    found under <root>``."""

    LOADED_KEY = 'gt_seg_map'

    def check_loaded(self, results: dict) -> None:
        if 'ori_shape' not in results:  # no image loaded before the label
            return
        seg_path = results.get('seg_map_path', '<no seg_map_path>')
        img_path = results.get('img_path', '<no img_path>')
        raise_problems(
            size_problems(seg_path, 'annotation', results['gt_seg_map'].shape,
                          img_path, results['ori_shape']))

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
