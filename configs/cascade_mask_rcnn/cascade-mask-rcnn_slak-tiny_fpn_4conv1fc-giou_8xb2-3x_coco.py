# Cascade Mask R-CNN (4conv1fc box heads with GIoU loss, SyncBN) + FPN with
# SLaK-T (300-epoch ImageNet weights) on COCO, 3x schedule (paper: 51.3 box
# AP, 44.3 mask AP). Source of every value: VITA-Group/SLaK detection/configs/
# cascade_mask_rcnn_slak_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_
# adamw_3x_coco_in1k.py (below: "the reference"), with mmdet 2.x's
# _base_/schedules/schedule_1x.py for what it inherits. fp32 here (the
# reference has no fp16 block; add --amp on GPUs).
_base_ = [
    '../_base_/models/cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_coco.py'
]

# reference `samples_per_gpu=2`: 8 GPUs x 2 = 16 images per batch
train_dataloader = dict(batch_size=2, dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader

# reference `optimizer`: AdamW lr 2e-4, betas (0.9, 0.999), wd 0.05, layer-
# wise lr decay 0.7 over 6 layers (its LearningRateDecayOptimizerConstructor;
# 1-D parameters and biases without weight decay)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
# reference `auto_scale_lr = dict(enable=True, base_batch_size=16)` (mmdet
# scales only with --auto-scale-lr)
auto_scale_lr = dict(enable=False, base_batch_size=16)

# linear warm-up over 500 iterations from 0.001 x lr: mmdet 2.x
# schedule_1x.py (`warmup_iters=500, warmup_ratio=0.001`), which the
# reference inherits (mmdet 3.x's ConvNeXt config uses 1000)
warmup = dict(
    type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)
max_epochs = 36  # reference `max_epochs=36`
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    warmup,
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],  # reference `lr_config = dict(step=[27, 33])`
        gamma=0.1)
]

# checkpoints and the last_checkpoint pointer written atomically; a failed
# write names the file and the reason
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
