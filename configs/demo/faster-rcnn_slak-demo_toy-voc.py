# Demo / integration run of the REAL VOC Faster R-CNN config on the toy
# VOCdevkit. Overridden: data root, image scale (short side 128-192 px),
# epochs (schedule shrunk to them), model width (the toy SLaK and widths of
# _base_/toy.py), 128 RoIs per image (1/16 of the image area), no
# validation during the short run (tools/test.py evaluates afterwards).
_base_ = [
    '../faster_rcnn/faster-rcnn_slak-tiny_fpn_8xb2-36e_voc0712.py',
    './_base_/toy.py'
]
data_root = '{{$MMSLAK_TOY_DATA:data/toy}}/VOCdevkit/'
max_epochs = 8
width = _base_.toy_width

model = dict(
    train_cfg=dict(rcnn=dict(sampler=dict(num=128))),
    backbone=_base_.toy_backbone,
    neck=dict(in_channels=_base_.toy_channels, out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256)))

# the real pipelines at the toy scale
train_pipeline = [
    dict(t, scales=[(320, s) for s in range(128, 193, 16)])
    if t.type == 'RandomChoiceResize' else t for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=(320, 160)) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=4,
    **_base_.toy_loader,
    dataset=dict(datasets=[
        dict(d, data_root=data_root, pipeline=train_pipeline)
        for d in _base_.train_dataloader.dataset.datasets
    ]))
test_dataloader = dict(
    **_base_.toy_loader,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs + 1)
# no ImageNet weights here: training from scratch needs a larger lr than
# the fine-tuning lr of the real config
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=20),  # warm-up: 20 iterations
    dict(_base_.param_scheduler[1], end=max_epochs, milestones=[6, 7]),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
val_dataloader = None
val_evaluator = None
val_cfg = None
randomness = dict(seed=0)  # reproducible toy runs
