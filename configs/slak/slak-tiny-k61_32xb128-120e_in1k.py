# Kernel-size study: SLaK-T, 120 epochs, stage kernels 61, 59, 57, 13
# (paper: 81.5 top-1, 31M params, 5.2G FLOPs).
# Same recipe as the 300-epoch model, shorter.
_base_ = ['./slak-tiny_32xb128_in1k.py']

model = dict(backbone=dict(kernel_sizes=(61, 59, 57, 13)))

train_cfg = dict(max_epochs=120)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        end=20,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)
]
