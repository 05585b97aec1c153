# Demo / integration run of the REAL default ADE20K config
# (configs/upernet_slak_ade20k.py: UperNet, AdamW + stage-wise lr decay,
# poly, pipelines, metric) on the toy ADE20K. Overridden: data root, image
# scale (128 px), iterations (schedule shrunk to them), model width (the toy
# SLaK of _base_/toy.py, narrower decode heads), no validation during the
# short run (tools/test.py evaluates afterwards).
_base_ = ['../upernet_slak_ade20k.py', './_base_/toy.py']
data_root = '{{$MMSLAK_TOY_DATA:data/toy}}/ade/ADEChallengeData2016'
crop_size = (128, 128)
scale = (512, 128)  # 1/4 of the real (2048, 512)
iters = 200

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=_base_.toy_backbone,
    decode_head=dict(in_channels=_base_.toy_channels, channels=64),
    auxiliary_head=dict(in_channels=_base_.toy_channels[2], channels=32),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))

# the real pipelines at the toy scale
train_pipeline = [
    dict(t, scale=scale) if t.type == 'RandomResize' else
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=scale) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=4,
    **_base_.toy_loader,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
test_dataloader = dict(
    **_base_.toy_loader,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))

# no ImageNet weights here: training from scratch needs a larger lr than
# the fine-tuning lr of the real config
optim_wrapper = dict(optimizer=dict(lr=3e-3))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=20),  # warm-up: 20 iterations
    dict(_base_.param_scheduler[1], begin=20, end=iters),
]
train_cfg = dict(max_iters=iters, val_interval=iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
val_dataloader = None
val_evaluator = None
val_cfg = None
randomness = dict(seed=0)  # reproducible toy runs
