# Demo / integration run of the REAL COCO Cascade Mask R-CNN 1x config on the
# toy COCO (tools/dataset_converters/make_toy_datasets.py). Overridden: data
# root, image scale (the DETR-style multi-scale augmentation at 1/4 size),
# epochs (schedule shrunk to them), model width (narrow SLaK, 64-channel
# FPN / RPN / RoI heads). Data root: $MMSLAK_TOY_DATA (data/toy).
_base_ = [
    '../cascade_mask_rcnn/'
    'cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-1x_coco.py'
]
data_root = '{{$MMSLAK_TOY_DATA:data/toy}}/coco/'
max_epochs = 6
width = 64


def _box_head(stds):
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=width,
        conv_out_channels=width,
        fc_out_channels=256,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0., 0., 0., 0.],
            target_stds=stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


def _rcnn_train(iou):
    # 1/16 of the image area: sample 128 RoIs per image instead of 512
    return dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=iou,
            neg_iou_thr=iou,
            min_pos_iou=iou,
            match_low_quality=False,
            ignore_iof_thr=-1),
        sampler=dict(
            type='RandomSampler',
            num=128,
            pos_fraction=0.25,
            neg_pos_ub=-1,
            add_gt_as_proposals=True),
        mask_size=28,
        pos_weight=-1,
        debug=False)


model = dict(
    train_cfg=dict(rcnn=[_rcnn_train(0.5),
                         _rcnn_train(0.6),
                         _rcnn_train(0.7)]),
    backbone=dict(
        arch=dict(_delete_=True, depths=[1, 1, 2, 1], dims=[24, 48, 96, 192]),
        kernel_sizes=(13, 11, 9, 7),
        small_kernel=3,
        drop_path_rate=0.1,
        init_cfg=None),  # no ImageNet weights for the toy run
    neck=dict(in_channels=[31, 62, 124, 249], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[
            _box_head([0.1, 0.1, 0.2, 0.2]),
            _box_head([0.05, 0.05, 0.1, 0.1]),
            _box_head([0.033, 0.033, 0.067, 0.067])
        ],
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)))

short = [s // 4 for s in range(480, 801, 32)]  # the paper's scales / 4
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
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(333, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
# no ImageNet weights here: training from scratch needs a larger lr than
# the fine-tuning lr of the real config
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=20),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[4, 5],
        gamma=0.1),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))

# no validation during the short run: tools/test.py evaluates afterwards
val_dataloader = None
val_evaluator = None
val_cfg = None
randomness = dict(seed=0)  # reproducible toy runs
