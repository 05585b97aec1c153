# Kernel-size study: SLaK-T, 120 epochs, stage kernels 51, 49, 47, 13
# (paper: 81.6 top-1). Same recipe as the 300-epoch model, shorter.
_base_ = ['./slak-tiny_32xb128_in1k.py']

model = dict(backbone=dict(kernel_sizes=(51, 49, 47, 13)))

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
