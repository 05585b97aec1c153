# SLaK-S, ImageNet-1K, 224px, 300 epochs (paper: 83.8 top-1, 55M non-zero).
# As SLaK-T but, from VITA-Group/SLaK README's SLaK-S training command:
# depths 3,3,27,3 (SLaK_small), --drop_path 0.4, and its sparse schedule
# -u 100 --prune_rate 0.3, and its layout: 8 GPUs (--nproc_per_node=8) x
# --batch_size 64, --update_freq 8 (4096 images per optimizer step).
_base_ = ['./slak-tiny_4xb128-accum8_in1k.py']

model = dict(backbone=dict(arch='small', drop_path_rate=0.4))
train_dataloader = dict(batch_size=64)  # the command's --batch_size 64

# the base's hooks, its sparse schedule changed to the command's
custom_hooks = [
    dict(hook, update_interval=100, prune_rate=0.3)
    if hook['type'] == 'SparseTrainingHook' else hook
    for hook in _base_.custom_hooks
]
