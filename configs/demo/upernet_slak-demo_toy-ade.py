# Demo / integration run of the REAL default ADE20K config on the toy data
# (tools/dataset_converters/make_toy_datasets.py). Overridden: data root,
# image scale (128 px), iterations (schedule shrunk to them), model width
# (a narrow SLaK with smaller kernels, narrower decode heads). Everything
# else (UperNet, AdamW + stage-wise lr decay, poly, pipelines, metric) is
# configs/upernet_slak_ade20k.py. Data root: $MMSLAK_TOY_DATA (data/toy).
_base_ = ['../upernet_slak_ade20k.py']
data_root = '{{$MMSLAK_TOY_DATA:data/toy}}/ade/ADEChallengeData2016'
crop_size = (128, 128)
iters = 200

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, depths=[1, 1, 2, 1], dims=[24, 48, 96, 192]),
        kernel_sizes=(13, 11, 9, 7),
        small_kernel=3,
        drop_path_rate=0.1,
        init_cfg=None),  # no ImageNet weights for the toy run
    decode_head=dict(in_channels=[31, 62, 124, 249], channels=64),
    auxiliary_head=dict(in_channels=124, channels=32),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(512, 128),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
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

# no ImageNet weights here: training from scratch needs a larger lr than
# the fine-tuning lr of the real config
optim_wrapper = dict(optimizer=dict(lr=3e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=20),
    dict(
        type='PolyLR',
        power=1.0,
        begin=20,
        end=iters,
        eta_min=0.0,
        by_epoch=False),
]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)

# no validation during the short run: tools/test.py evaluates afterwards
val_dataloader = None
val_evaluator = None
val_cfg = None
randomness = dict(seed=0)  # reproducible toy runs
