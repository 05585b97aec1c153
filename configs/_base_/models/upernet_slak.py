# UperNet + SLaK-T for ADE20K (mmseg 1.x): mmseg's ConvNeXt UperNet (the
# reference's segmentation/configs/upernet_SLaK.py is the same head: 512
# channels, FCN auxiliary head with loss weight 0.4, SyncBN) with the
# backbone swapped. Weights: an ImageNet SLaK checkpoint with `backbone.*`
# keys (README "Checkpoints").
_base_ = ['mmseg::_base_/models/upernet_convnext.py', '../slak_downstream.py']
# mmslak also registers the checked datasets (labels, boxes, files: README
# "Bad input")
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    backbone={{_base_.slak_tiny_backbone}},
    decode_head=dict(
        in_channels={{_base_.slak_tiny_channels}}, num_classes=150),
    auxiliary_head=dict(in_channels=499, num_classes=150))
