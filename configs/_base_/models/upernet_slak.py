# UperNet + SLaK-T for ADE20K (mmseg 1.x). mmseg's ConvNeXt UperNet with the
# backbone swapped; the weights come from an ImageNet SLaK checkpoint
# (`backbone.*` keys, see README "Checkpoints").
_base_ = ['mmseg::_base_/models/upernet_convnext.py']
# mmslak.datasets: the checked datasets (labels, boxes, files: README
# "Bad input")
custom_imports = dict(
    imports=['mmslak', 'mmslak.datasets'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SLaK',
        arch='tiny',
        width_factor=1.3,
        kernel_sizes=(51, 49, 47, 13),
        small_kernel=5,
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        norm_cfg=norm_cfg,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/slak_tiny_in1k_backbone.pth',
            prefix='backbone.')),
    decode_head=dict(in_channels=[124, 249, 499, 998], num_classes=150),
    auxiliary_head=dict(in_channels=499, num_classes=150))
