# SLaK-B fine-tuned at 384px for 30 epochs from the 224px model (paper: 85.5
# top-1). The paper follows ConvNeXt's ImageNet-1K 384px fine-tuning recipe
# (facebookresearch/ConvNeXt TRAINING.md, "Finetune from ImageNet-1K
# pre-training", ConvNeXt-B: --drop_path 0.8 --input_size 384 --batch_size
# 32 x 16 GPUs --lr 5e-5 --warmup_epochs 0 --epochs 30 --weight_decay 1e-8
# --layer_decay 0.7 --cutmix 0 --mixup 0, no --model_ema; "the recipe"
# below). Masks: those of the 224px model (its checkpoint's `sparsity`
# entry, else its zeros), kept fixed.
_base_ = ['./slak-base_16xb32-accum8_in1k.py']

model = dict(
    backbone=dict(drop_path_rate=0.8),  # the recipe's --drop_path 0.8
    # the recipe's --mixup 0 --cutmix 0: no batch augments (label smoothing
    # 0.1 stays: main.py --smoothing)
    train_cfg=None)
# an mmpretrain-format SLaK-B checkpoint (tools/train.py output, or the
# paper's weights through tools/model_converters/slak2mmpretrain.py)
load_from = 'checkpoints/slak_base_in1k.pth'

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
# main.py's training transforms at --input_size 384 (RandAugment
# rand-m9-mstd0.5-inc1, random erasing 0.25 in pixel mode)
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
# ConvNeXt datasets.py: at 384px and above the test image is warped to
# 384x384 (bicubic), no centre crop
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=384, backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# the recipe's --lr 5e-5 at total batch 512 (16 GPUs x 32), scaled linearly
# to this file's 1024 (32 GPUs x 32): 1e-4; --weight_decay 1e-8 (none on
# 1-D parameters and biases); --layer_decay 0.7 over ConvNeXt's 12 layers
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=1e-8),
    # one forward per optimizer step (the base file accumulates 8): this
    # file keeps its own layout, 32 GPUs x 32
    accumulative_counts=1,
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True, decay_rate=0.7, decay_type='layer_wise', num_layers=12))
# base_batch_size = (32 GPUs) x (32 samples per GPU)
auto_scale_lr = dict(base_batch_size=1024)

# the recipe's --warmup_epochs 0 and main.py --min_lr 1e-6: a cosine from
# the start, per iteration
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=0,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=30)  # the recipe's --epochs 30

# no EMA (the recipe has no --model_ema); static masks from the checkpoint
custom_hooks = [
    dict(type='SparseTrainingHook', init='checkpoint', dynamic=False),
    # every random state in the checkpoints: --resume repeats the run
    dict(type='RandomStateHook'),
    # a NaN/inf loss stops the run before it reaches the weights
    dict(type='FiniteLossHook'),
]
