# UperNet + SLaK-B on ADE20K, 160k iterations (paper: 50.0 mIoU). As SLaK-T
# but, from VITA-Group/SLaK segmentation/configs/upernet_slak_base_512_160k_
# ade20k_ss.py: widths 166,332,665,1331 (int(d * 1.3) for d in 128, 256,
# 512, 1024), drop path 0.4, lr decay over 12 layers.
_base_ = ['./upernet_slak-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/slak_base_in1k_backbone.pth')),
    decode_head=dict(in_channels=[166, 332, 665, 1331]),
    auxiliary_head=dict(in_channels=665))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
