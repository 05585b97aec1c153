# UperNet + SLaK-T from the 120-epoch ImageNet model, 80k iterations
# (paper: 46.2 mIoU). Source of every value: VITA-Group/SLaK segmentation/
# configs/upernet_slak_tiny_512_80k_ade20k_ss.py ("the reference" below);
# the rest (model, data, slide test) as the 160k SLaK-T config.
_base_ = ['./upernet_slak-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        drop_path_rate=0.1,  # reference `drop_path_rate=0.1`
        init_cfg=dict(
            checkpoint='checkpoints/slak_tiny_in1k_120e_backbone.pth')))

# Dense fine-tuning: the reference backbone has no `sparse=True` here
# (unlike its 160k configs), so no SparseTrainingHook: the zeros of the
# sparse ImageNet weights are free to grow (the fault-tolerance hooks stay).
custom_hooks = {{_base_.fault_tolerance_hooks}}

# reference `optimizer`: AdamW lr 2e-4, betas (0.9, 0.999), wd 0.05,
# `paramwise_cfg=dict(norm_decay_mult=0)`, no layer-wise lr decay
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
# reference `lr_config`: linear warm-up over 800 iterations from 1e-6 x lr,
# then poly with power 1.0 to 0
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=800),
    dict(
        type='PolyLR',
        power=1.0,
        begin=800,
        end=80000,
        eta_min=0.0,
        by_epoch=False),
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))

# 16 images per iteration, the reference's layout: 4 GPUs (its README's
# `dist_train.sh ... upernet_slak_tiny_512_80k_ade20k_ss.py 4`) x
# `data=dict(samples_per_gpu=4)` (the reference's newest commit, issue 23
# item 5; its header's "8 batchsize per GPU" is stale)
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=16)
