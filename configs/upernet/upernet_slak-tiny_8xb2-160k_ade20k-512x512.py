# UperNet + SLaK-T on ADE20K, 160k iterations at 512x512 (paper: 47.6 mIoU,
# single scale). Source of every value: VITA-Group/SLaK segmentation/configs/
# upernet_slak_tiny_512_160k_ade20k_ss.py ("the reference" below). The
# backbone (drop path 0.4, SyncBN) and the sparse fine-tuning hook come from
# ../_base_/slak_downstream.py.
_base_ = [
    '../_base_/models/upernet_slak.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
crop_size = (512, 512)  # reference `crop_size = (512, 512)`
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # reference `test_cfg = dict(mode='slide', crop_size=crop_size,
    # stride=(341, 341))`
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# reference `optimizer`: AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05, lr decay
# 0.9 stage-wise over 6 layers (1-D parameters and biases without decay)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))

# reference `lr_config`: linear warm-up over 1500 iterations from 1e-6 x lr,
# then poly with power 1.0 to 0, per iteration
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

# 16 images per batch: the reference runs 4 GPUs x `samples_per_gpu=4`, the
# same total as 8 GPUs x 2 here
train_dataloader = dict(
    batch_size=2, dataset=dict(type='CheckedADE20KDataset'))
val_dataloader = dict(batch_size=1, dataset=dict(type='CheckedADE20KDataset'))
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

# checkpoints and the last_checkpoint pointer written atomically; a failed
# write names the file and the reason
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
