# Demo / integration run of the REAL VOC Faster R-CNN config on the toy
# VOCdevkit (tools/dataset_converters/make_toy_datasets.py). Overridden:
# data root, image scale (short side 128-192 px), epochs (schedule shrunk
# to them), model width (narrow SLaK, 64-channel FPN / RPN / RoI head).
# Data root: $MMSLAK_TOY_DATA (data/toy).
_base_ = ['../faster_rcnn/faster-rcnn_slak-tiny_fpn_8xb2-36e_voc0712.py']
data_root = '{{$MMSLAK_TOY_DATA:data/toy}}/VOCdevkit/'
max_epochs = 8
width = 64

model = dict(
    # 1/16 of the image area: sample 128 RoIs per image instead of 512
    train_cfg=dict(rcnn=dict(sampler=dict(num=128))),
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
        bbox_head=dict(in_channels=width, fc_out_channels=256)))


def voc_trainval(year, pipeline, root):
    return dict(
        type='CheckedVOCDataset',
        data_root=root,
        ann_file=f'{year}/ImageSets/Main/trainval.txt',
        data_prefix=dict(sub_data_root=f'{year}/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32, bbox_min_size=32),
        pipeline=pipeline)


train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomChoiceResize',
        scales=[(320, s) for s in range(128, 193, 16)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(datasets=[
        voc_trainval('VOC2007', train_pipeline, data_root),
        voc_trainval('VOC2012', train_pipeline, data_root)
    ]))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

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
        milestones=[6, 7],
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
