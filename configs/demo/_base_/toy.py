# What the three toy runs of configs/demo/ share: a narrow SLaK-T with
# smaller kernels, narrow necks / heads, single-process data loading. Only
# new keys (`toy_*`) live here, so this file sits beside a real config in a
# demo's `_base_` (mmengine forbids a key in two bases); each demo takes
# them as `_base_.toy_*`. Toy data: tools/dataset_converters/
# make_toy_datasets.py, under $MMSLAK_TOY_DATA (default data/toy).

# SLaK-T's macro design at 1/4 of its widths and depths, kernels 13..7
# instead of 51..13; no ImageNet weights (trained from scratch).
toy_backbone = dict(
    arch=dict(_delete_=True, depths=[1, 1, 2, 1], channels=[24, 48, 96, 192]),
    kernel_sizes=(13, 11, 9, 7),
    small_kernel=3,
    drop_path_rate=0.1,
    init_cfg=None)
# its stage widths: int(c * 1.3) for c in 24, 48, 96, 192
toy_channels = [31, 62, 124, 249]
# FPN / RPN / RoI head width of the detection demos (256 in the real ones)
toy_width = 64
# data loaders: one process, so the demos run anywhere
toy_loader = dict(num_workers=0, persistent_workers=False)
