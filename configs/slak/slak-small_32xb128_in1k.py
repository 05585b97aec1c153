# SLaK-S, ImageNet-1K, 224px, 300 epochs (paper: 83.8 top-1, 55M non-zero).
# As SLaK-T but, from VITA-Group/SLaK README's SLaK-S training command:
# depths 3,3,27,3 (SLaK_small), --drop_path 0.4, and its sparse schedule
# -u 100 --prune_rate 0.3. Total batch 4096 (8 GPUs x 64 x --update_freq 8
# there, 32 x 128 here).
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
        final_prune_rate=0.005,
        growth='random'),
    {{_base_.ema_hook}},
    # every random state in the checkpoints: --resume repeats the run
    dict(type='RandomStateHook'),
    # a NaN/inf loss stops the run before it reaches the weights
    dict(type='FiniteLossHook'),
]
