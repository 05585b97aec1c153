# UperNet + SLaK-T from the 120-epoch ImageNet model, 80k iterations
# (paper: 46.2 mIoU). The paper's short recipe: lr 2e-4, 800 warm-up
# iterations, no layer-wise lr decay.
_base_ = ['./upernet_slak-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='checkpoints/slak_tiny_in1k_120e_backbone.pth')))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
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
