# SLaK-S, ImageNet-1K, 224px, 300 epochs (paper: 83.8 top-1, 55M non-zero).
# As SLaK-T but depths 3,3,27,3, drop path 0.4, and the paper's S/B sparse
# schedule (prune/regrow every 100 iters, prune rate 0.3).
_base_ = ['./slak-tiny_32xb128_in1k.py']

model = dict(backbone=dict(arch='small', drop_path_rate=0.4))

custom_hooks = [
    dict(
        type='SparseTrainingHook',
        density=0.6,
        init='snip',
        scope='all',
        update_interval=100,
        prune_rate=0.3,
        growth='random'),
    dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    # every random state in the checkpoints: --resume repeats the run
    dict(type='RandomStateHook'),
    # a NaN/inf loss stops the run before it reaches the weights
    dict(type='FiniteLossHook'),
]
