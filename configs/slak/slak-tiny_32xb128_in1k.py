# SLaK-T, ImageNet-1K, 224px, 300 epochs (paper: 82.5 top-1, 30M non-zero
# params at density 0.6). AdamW lr 4e-3 for a total batch of 4096
# (32 GPUs x 128; `auto_scale_lr` rescales for other batch sizes), wd 0.05,
# 20 warm-up epochs + cosine, RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8,
# CutMix 1.0, label smoothing 0.1, random erasing 0.25, EMA, and dynamic
# sparse training at density 0.6 (SNIP init, prune/regrow every 2000 iters,
# prune rate 0.5 decaying with a cosine).
_base_ = [
    '../_base_/models/slak_in1k.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)

train_dataloader = dict(batch_size=128)

optim_wrapper = dict(optimizer=dict(lr=4e-3), clip_grad=None)

# checkpoints and the last_checkpoint pointer written atomically; a failed
# write names the file and the reason
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

custom_hooks = [
    dict(
        type='SparseTrainingHook',
        density=0.6,
        init='snip',
        scope='all',
        update_interval=2000,
        prune_rate=0.5,
        growth='random'),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # every random state in the checkpoints: --resume repeats the run
    dict(type='RandomStateHook'),
    # a NaN/inf loss stops the run before it reaches the weights
    dict(type='FiniteLossHook'),
]

# base_batch_size = (32 GPUs) x (128 samples per GPU)
auto_scale_lr = dict(base_batch_size=4096)
