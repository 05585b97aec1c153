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

# the command's layout: 4 GPUs (--nproc_per_node=4) x --batch_size 128 per
# forward, gradients accumulated over --update_freq 8 iterations (engine.py
# steps the optimizer, the masks and the EMA every 8th): 4096 images per
# optimizer step, SyncBN statistics over 512 images, SNIP on 128
train_dataloader = dict(batch_size=128)
# base_batch_size = (4 GPUs) x (128 samples per GPU) x (8 accumulated): the
# images per optimizer step the lr and the sparse interval were written for.
# mmengine's --auto-scale-lr counts GPUs x batch only (no accumulation):
# keep it off for these configs, or keep the 8 accumulation steps in mind.
auto_scale_lr = dict(base_batch_size=4096)

# main.py --lr 4e-3 (at total batch 4096), --clip_grad None; the command's
# --update_freq 8 (main.py divides the loss by it, as mmengine does)
optim_wrapper = dict(
    optimizer=dict(lr=4e-3), clip_grad=None, accumulative_counts=8)

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
# included (update_buffers=True), once per optimizer step (engine.py calls
# model_ema.update every --update_freq iterations): interval=8, the
# accumulation (mmengine's EMAHook is called every iteration)
ema_hook = dict(
    type='EMAHook',
    momentum=1e-4,
    update_buffers=True,
    interval=8,
    priority='ABOVE_NORMAL')

# checkpoints and the last_checkpoint pointer written atomically; a failed
# write names the file and the reason. main.py keeps checkpoint-best.pth by
# top-1: here the best by accuracy/top1 (of the EMA model, which mmengine's
# EMAHook validates; tests/configs/test_recipes.py DEVIATIONS)
default_hooks = dict(
    checkpoint=dict(
        type='AtomicCheckpointHook', save_best='accuracy/top1',
        rule='greater'))

# the command's --sparse --sparsity 0.4 --sparse_init snip -u 2000
# --prune_rate 0.5 --growth random; sparse_core.py: every 2-D / 4-D weight
# (no --only-L), CosineDecay of the prune rate to eta_min 0.005; -u counts
# optimizer steps (engine.py calls mask.step() once per --update_freq
# iterations) at total batch 4096 (auto_scale_lr.base_batch_size): the hook
# counts optimizer steps too (every 2000 x 8 iterations here)
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
