# Kernel-size study: SLaK-T, 120 epochs, stage kernels 31, 29, 27, 13
# (paper: 81.5 top-1, 4.8G FLOPs).
# The 120-epoch recipe of the k51 config, other kernels.
_base_ = ['./slak-tiny-k51_4xb128-accum8-120e_in1k.py']

model = dict(backbone=dict(kernel_sizes=(31, 29, 27, 13)))
