# SLaK-B, ImageNet-1K, 224px, 300 epochs (paper: 84.0 top-1, 95M non-zero).
# As SLaK-S (the same -u 100 --prune_rate 0.3) but, from VITA-Group/SLaK
# README's SLaK-B training command: SLaK_base (dims 128..1024, widths
# 166,332,665,1331) and --drop_path 0.5, and its layout: 16 GPUs
# (--nproc_per_node=16) x --batch_size 32, --update_freq 8 (4096 images per
# optimizer step).
_base_ = ['./slak-small_8xb64-accum8_in1k.py']

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5),
    head=dict(in_channels=1331))  # int(1024 * 1.3)
train_dataloader = dict(batch_size=32)  # the command's --batch_size 32
