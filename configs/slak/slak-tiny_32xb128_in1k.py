# SLaK-T, ImageNet-1K, 224px, 300 epochs (paper: 82.5 top-1, 30M non-zero
# params at density 0.6). Sources: VITA-Group/SLaK README's SLaK-T training
# command ("the command"), main.py's defaults ("main.py"), sparse_core.py;
# main.py is ConvNeXt's, so its defaults are ConvNeXt's ImageNet recipe.
_base_ = [
    '../_base_/models/slak_in1k.py',
    # main.py --aa rand-m9-mstd0.5-inc1, --reprob 0.25 --remode pixel,
    # bicubic RandomResizedCrop 224; test: resize 256 (crop_pct 0.875) +
    # centre crop 224, bicubic
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    # AdamW betas (0.9, 0.999) eps 1e-8, wd 0.05 with none on 1-D
    # parameters and biases (main.py --weight_decay, timm's optimizer
    # factory skips 1-D / bias)
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

# total batch 4096: the command's 4 GPUs x --batch_size 128 x --update_freq
# 8; here 32 GPUs x 128 (the same optimizer-step batch)
train_dataloader = dict(batch_size=128)
# base_batch_size = (32 GPUs) x (128 samples per GPU)
auto_scale_lr = dict(base_batch_size=4096)

# main.py --lr 4e-3 (at total batch 4096), --clip_grad None
optim_wrapper = dict(optimizer=dict(lr=4e-3), clip_grad=None)

# main.py --warmup_epochs 20 --min_lr 1e-6 and utils.cosine_scheduler: a
# linear warm-up then a cosine to 1e-6, both per iteration. (The reference
# warms up from 0; mmengine's LinearLR needs a start factor > 0.)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=20,
        convert_to_iter_based=True),
    # `end` defaults to the run's max_epochs (300 here, 120 in the
    # kernel-size configs)
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-6,
        by_epoch=True,
        begin=20,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=300)  # the command's --epochs 300

# the command's --model_ema true (main.py --model_ema_decay 0.9999): the
# reference's ModelEma averages the whole state dict, BN running statistics
# included (update_buffers=True)
ema_hook = dict(
    type='EMAHook',
    momentum=1e-4,
    update_buffers=True,
    priority='ABOVE_NORMAL')

# checkpoints and the last_checkpoint pointer written atomically; a failed
# write names the file and the reason
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

# the command's --sparse --sparsity 0.4 --sparse_init snip -u 2000
# --prune_rate 0.5 --growth random; sparse_core.py: every 2-D / 4-D weight
# (no --only-L), CosineDecay of the prune rate to eta_min 0.005; -u counts
# optimizer steps at total batch 4096 (auto_scale_lr.base_batch_size)
custom_hooks = [
    dict(
        type='SparseTrainingHook',
        density=0.6,
        init='snip',
        scope='all',
        update_interval=2000,
        prune_rate=0.5,
        final_prune_rate=0.005,
        growth='random'),
    ema_hook,
    # every random state in the checkpoints: --resume repeats the run
    dict(type='RandomStateHook'),
    # a NaN/inf loss stops the run before it reaches the weights
    dict(type='FiniteLossHook'),
]
