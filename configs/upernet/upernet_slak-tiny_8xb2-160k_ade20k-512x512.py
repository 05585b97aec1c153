# UperNet + SLaK-T on ADE20K, 160k iterations at 512x512 (paper: 47.6 mIoU,
# single scale). AdamW lr 1e-4, wd 0.05, lr decay 0.9 over 6 layers
# (stage-wise, as the reference config), 1500 linear warm-up iterations then
# poly, 16 images per batch (8 GPUs x 2), drop path 0.4, sliding-window
# test with 512 crops and stride 341, SyncBN.
_base_ = [
    '../_base_/models/upernet_slak.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
# mmslak.datasets: the checked datasets (labels, boxes, files: README
# "Bad input")
custom_imports = dict(
    imports=['mmslak', 'mmslak.datasets'], allow_failed_imports=False)
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        begin=1500,
        end=160000,
        eta_min=0.0,
        by_epoch=False),
]

# 8 GPUs x 2 images = 16 images per batch
train_dataloader = dict(
    batch_size=2, dataset=dict(type='CheckedADE20KDataset'))
val_dataloader = dict(batch_size=1, dataset=dict(type='CheckedADE20KDataset'))
test_dataloader = val_dataloader
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
