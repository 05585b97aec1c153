# As the 3x config, from the 120-epoch ImageNet SLaK-T, 12 epochs with lr
# x0.1 at 8 and 11 (paper: 48.4 box AP, 41.8 mask AP). Source: VITA-Group/
# SLaK detection/configs/cascade_mask_rcnn_slak_tiny_120_patch4_window7_
# mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py (despite its name, a
# 12-epoch schedule: `lr_config = dict(step=[8, 11])`, `max_epochs=12`).
_base_ = ['./cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-3x_coco.py']

model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='checkpoints/slak_tiny_in1k_120e_backbone.pth')))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    {{_base_.warmup}},  # 500 iterations, as the 3x config
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]
