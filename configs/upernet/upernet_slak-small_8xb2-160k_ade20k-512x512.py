# UperNet + SLaK-S on ADE20K, 160k iterations (paper: 49.4 mIoU). As SLaK-T
# but, from VITA-Group/SLaK segmentation/configs/upernet_slak_small_512_160k_
# ade20k_ss.py: depths 3,3,27,3, drop path 0.3, lr decay over 12 layers.
_base_ = ['./upernet_slak-tiny_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/slak_small_in1k_backbone.pth')))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
