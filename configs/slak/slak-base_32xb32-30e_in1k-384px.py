# SLaK-B fine-tuned at 384px for 30 epochs from the 224px model (paper: 85.5
# top-1). The paper gives no fine-tuning recipe; this is ConvNeXt's (lr
# 5e-5 per 512 images, i.e. 1e-4 at this file's 1024, wd 1e-8, layer-wise
# lr decay 0.8, no warm-up, drop path 0.8, EMA). Sparse fine-tuning: the
# masks of the 224px model (its checkpoint's `sparsity` entry, else its
# zeros) are kept fixed.
_base_ = ['./slak-base_32xb128_in1k.py']

model = dict(backbone=dict(drop_path_rate=0.8))
# an mmpretrain-format SLaK-B checkpoint (tools/train.py output, or the
# paper's weights through tools/model_converters/slak2mmpretrain.py)
load_from = 'checkpoints/slak_base_in1k.pth'

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=384,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=1e-8),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True, decay_rate=0.8, decay_type='layer_wise', num_layers=12))

param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0)
]
train_cfg = dict(max_epochs=30)

# base_batch_size = (32 GPUs) x (32 samples per GPU)
auto_scale_lr = dict(base_batch_size=1024)

custom_hooks = [
    dict(type='SparseTrainingHook', init='checkpoint', dynamic=False),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # every random state in the checkpoints: --resume repeats the run
    dict(type='RandomStateHook'),
    # a NaN/inf loss stops the run before it reaches the weights
    dict(type='FiniteLossHook'),
]
