# As the 3x config, from the 120-epoch ImageNet SLaK-T, 12 epochs with lr
# x0.1 at 8 and 11 (paper: 48.4 box AP, 41.8 mask AP).
_base_ = ['./cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-3x_coco.py']

model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='checkpoints/slak_tiny_in1k_120e_backbone.pth')))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]
