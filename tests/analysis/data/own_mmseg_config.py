# UperNet + SLaK-T in your own mmsegmentation config: inherit mmseg's own
# bases and swap the backbone. `custom_imports` registers SLaK (as
# 'mmpretrain.SLaK') and mmslak's layer-decay optimizer constructor.
_base_ = [
    'mmseg::_base_/models/upernet_convnext.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SLaK',
        arch='tiny',  # widths 124, 249, 499, 998 (x1.3)
        kernel_sizes=(51, 49, 47, 13),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,  # per-stage norm0..norm3 outputs
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(
            type='PretrainedStrict',  # mmslak's: every key must match
            checkpoint='checkpoints/slak_tiny_in1k.pth',
            prefix='backbone.',
            new_layers=['norm0.', 'norm1.', 'norm2.', 'norm3.'],
            ignore_keys=['norm.'])),
    decode_head=dict(in_channels=[124, 249, 499, 998], num_classes=150),
    auxiliary_head=dict(in_channels=499, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
