# SLaK-S, ImageNet-1K, 224px, 300 epochs (paper: 83.8 top-1, 55M non-zero).
# As SLaK-T but, from VITA-Group/SLaK README's SLaK-S training command:
# depths 3,3,27,3 (SLaK_small), --drop_path 0.4, and its sparse schedule
# -u 100 --prune_rate 0.3. Total batch 4096 (8 GPUs x 64 x --update_freq 8
# there, 32 x 128 here).
_base_ = ['./slak-tiny_32xb128_in1k.py']

model = dict(backbone=dict(arch='small', drop_path_rate=0.4))

# the base's hooks, its sparse schedule changed to the command's
custom_hooks = [
    dict(hook, update_interval=100, prune_rate=0.3)
    if hook['type'] == 'SparseTrainingHook' else hook
    for hook in _base_.custom_hooks
]
