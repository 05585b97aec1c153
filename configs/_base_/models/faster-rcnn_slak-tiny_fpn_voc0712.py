# Faster R-CNN + FPN with SLaK-T on VOC07+12: mmdet's VOC Faster R-CNN config
# (model, VOC data, runtime) with the backbone swapped.
_base_ = [
    'mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py',
    '../slak_downstream.py'
]
# mmslak also registers the checked datasets (labels, boxes, files: README
# "Bad input")
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.slak_tiny_backbone}},
    neck=dict(in_channels={{_base_.slak_tiny_channels}}))
