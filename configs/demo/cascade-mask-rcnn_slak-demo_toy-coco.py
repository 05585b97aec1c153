# Demo / integration run of the REAL COCO Cascade Mask R-CNN 1x config on
# the toy COCO. Overridden: data root, image scale (the DETR-style
# multi-scale augmentation at 1/4 size), epochs (schedule shrunk to them),
# model width (the toy SLaK and widths of _base_/toy.py), 128 RoIs per image
# (1/16 of the image area), no validation during the short run
# (tools/test.py evaluates afterwards).
_base_ = [
    '../cascade_mask_rcnn/'
    'cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-1x_coco.py',
    './_base_/toy.py'
]
data_root = '{{$MMSLAK_TOY_DATA:data/toy}}/coco/'
max_epochs = 6
width = _base_.toy_width

model = dict(
    # 1/16 of the image area: sample 128 RoIs per image instead of 512
    train_cfg=dict(rcnn=[
        dict(stage, sampler=dict(stage.sampler, num=128))
        for stage in _base_.model.train_cfg.rcnn
    ]),
    backbone=_base_.toy_backbone,
    neck=dict(in_channels=_base_.toy_channels, out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[
            dict(
                head,
                in_channels=width,
                conv_out_channels=width,
                fc_out_channels=256)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)))

# the real DETR-style multi-scale augmentation at 1/4 of its scales
short = [s // 4 for s in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(
                type='RandomChoiceResize',
                scales=[(333, s) for s in short],
                keep_ratio=True)
        ],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(333, 100), (333, 125), (333, 150)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(96, 150),
                            allow_negative_crop=True),
                        dict(
                            type='RandomChoiceResize',
                            scales=[(333, s) for s in short],
                            keep_ratio=True)
                    ]]),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(t, scale=(333, 160)) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=4,
    **_base_.toy_loader,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
test_dataloader = dict(
    **_base_.toy_loader,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root +
                      'annotations/instances_val2017.json')

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
# no ImageNet weights here: training from scratch needs a larger lr than
# the fine-tuning lr of the real config
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=20),  # warm-up: 20 iterations
    dict(_base_.param_scheduler[1], end=max_epochs, milestones=[4, 5]),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
val_dataloader = None
val_evaluator = None
val_cfg = None
randomness = dict(seed=0)  # reproducible toy runs
