# SLaK-T ImageNet-1K classifier (mmpretrain ImageClassifier), the paper's
# 300-epoch recipe: label smoothing 0.1, Mixup 0.8 / CutMix 1.0.
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmpretrain.SLaK',
        arch='tiny',
        width_factor=1.3,
        kernel_sizes=(51, 49, 47, 13),
        small_kernel=5,
        drop_path_rate=0.1),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=998,  # int(768 * 1.3)
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)
