# SLaK-T ImageNet-1K classifier (mmpretrain ImageClassifier). Sources:
# VITA-Group/SLaK models/SLaK.py (architecture), main.py (defaults) and the
# README's SLaK-T training command ("the command" below).
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmpretrain.SLaK',
        arch='tiny',  # SLaK_tiny: depths [3, 3, 9, 3], dims [96..768]
        width_factor=1.3,  # the command's --width_factor 1.3
        kernel_sizes=(51, 49, 47, 13),  # the command's --kernel_size
        small_kernel=5,  # ... 51 49 47 13 5
        drop_path_rate=0.1,  # the command's --drop_path 0.1
        layer_scale_init_value=1e-6,  # main.py --layer_scale_init_value
        # models/SLaK.py `use_sync_bn = True`: the BN of each large-kernel
        # branch is SyncBN (statistics over all GPUs). A single-process run
        # falls back to BatchNorm (mmengine's runner reverts SyncBN when
        # not distributed; torch's SyncBatchNorm runs plain BN when no
        # process group is initialised).
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=998,  # int(768 * 1.3)
        # main.py --smoothing 0.1 (with mixup: timm's label-smoothed
        # soft targets)
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # models/SLaK.py _init_weights: trunc_normal_(std=.02), bias 0
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    # main.py --mixup 0.8 --cutmix 1.0 --mixup_prob 1.0
    # --mixup_switch_prob 0.5: one of the two per batch, with equal odds
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)
