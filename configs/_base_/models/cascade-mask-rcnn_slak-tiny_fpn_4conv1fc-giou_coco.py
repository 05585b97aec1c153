# Cascade Mask R-CNN (4conv1fc box heads with GIoU loss, SyncBN) + FPN with
# SLaK-T on COCO: mmdet's ConvNeXt-T config (the same heads and DETR-style
# multi-scale augmentation as the reference's detection/configs/
# cascade_mask_rcnn_slak_tiny_*.py) with the backbone swapped.
_base_ = [
    'mmdet::convnext/'
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    '../slak_downstream.py'
]
# mmslak also registers the checked datasets (labels, boxes, files: README
# "Bad input")
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.slak_tiny_backbone}},
    neck=dict(in_channels={{_base_.slak_tiny_channels}}))
