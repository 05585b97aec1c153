# Cascade Mask R-CNN (4conv1fc box heads with GIoU loss, SyncBN) + FPN with
# SLaK-T (300-epoch ImageNet weights) on COCO, 3x schedule (paper: 51.3 box
# AP, 44.3 mask AP). DETR-style multi-scale training, AdamW lr 2e-4 wd 0.05,
# layer-wise lr decay 0.7 over 6 layers, drop path 0.4, 36 epochs with lr
# x0.1 at 27 and 33, 16 images per batch (8 GPUs x 2). mmdet's ConvNeXt-T
# config with the backbone swapped (fp32 here; add --amp on GPUs).
_base_ = [
    'mmdet::convnext/'
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
# mmslak.datasets: the checked datasets (labels, boxes, files: README
# "Bad input")
custom_imports = dict(
    imports=['mmslak', 'mmslak.datasets'], allow_failed_imports=False)

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
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/slak_tiny_in1k_backbone.pth',
            prefix='backbone.')),
    neck=dict(in_channels=[124, 249, 499, 998]))

train_dataloader = dict(batch_size=2, dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Sparse fine-tuning as the reference: the backbone keeps the zero pattern
# of its (sparse) ImageNet weights, loaded by init_cfg before training;
# necks and heads stay dense.
custom_hooks = [
    dict(
        type='SparseTrainingHook',
        init='checkpoint',
        dynamic=False,
        scope='all',
        exclude=[r'^(?!backbone\.)'])
]
