# Mask R-CNN + SLaK-T in your own mmdetection config: inherit an mmdet
# config and swap the backbone; the FPN takes SLaK-T's stage widths.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SLaK',
        arch='tiny',
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        init_cfg=dict(
            type='PretrainedStrict',  # mmslak's: every key must match
            checkpoint='checkpoints/slak_tiny_in1k.pth',
            prefix='backbone.',
            new_layers=['norm0.', 'norm1.', 'norm2.', 'norm3.'],
            ignore_keys=['norm.'])),
    neck=dict(in_channels=[124, 249, 499, 998]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
