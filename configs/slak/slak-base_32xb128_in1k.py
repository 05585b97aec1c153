# SLaK-B, ImageNet-1K, 224px, 300 epochs (paper: 84.0 top-1, 95M non-zero).
# Widths 166,332,665,1331, drop path 0.5, S/B sparse schedule.
_base_ = ['./slak-small_32xb128_in1k.py']

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5),
    head=dict(in_channels=1331))  # int(1024 * 1.3)
