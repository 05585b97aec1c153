# SLaK-T as a dense-prediction backbone, the sparse fine-tuning hook and the
# fault-tolerance hooks, written once for the ADE20K / VOC / COCO configs.
# The files under _base_/models/ put `{{_base_.slak_tiny_backbone}}` in their
# model. This file defines no `model` or `custom_imports` key, so it can sit
# beside an mmseg / mmdet base (mmengine forbids a key in two bases).
# Sources: VITA-Group/SLaK segmentation/configs/upernet_slak_tiny_512_160k_
# ade20k_ss.py and detection/configs/cascade_mask_rcnn_slak_tiny_*.py
# (`model.backbone`), segmentation/configs/upernet_SLaK.py (`norm_cfg`).

# int(d * 1.3) for d in 96, 192, 384, 768 (reference `width_factor=1.3`)
slak_tiny_channels = [124, 249, 499, 998]
slak_tiny_backbone = dict(
    _delete_=True,  # replaces the upstream ResNet / ConvNeXt backbone
    type='mmpretrain.SLaK',
    arch='tiny',  # reference depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]
    width_factor=1.3,  # reference width_factor=1.3
    kernel_sizes=(51, 49, 47, 13),  # reference kernel_size=[51,49,47,13,5]
    small_kernel=5,
    drop_path_rate=0.4,  # reference 160k ADE20K and COCO configs
    layer_scale_init_value=1.0,  # reference downstream configs
    norm_cfg=dict(type='SyncBN', requires_grad=True),  # upernet_SLaK.py
    out_indices=(0, 1, 2, 3),
    gap_before_final_norm=False,
    # strict: any missing, unexpected or mis-shaped backbone key is an
    # error (mmengine's `Pretrained` would only warn); the per-stage output
    # norms are new. The classifier's final norm (`norm3`, on pooled
    # features) is not loaded into the dense `norm3`: the reference's
    # downstream backbone has no key matching the classifier's `norm.`, so
    # its norm3 starts at its init as well.
    init_cfg=dict(
        type='PretrainedStrict',
        checkpoint='checkpoints/slak_tiny_in1k_backbone.pth',
        prefix='backbone.',
        new_layers=['norm0.', 'norm1.', 'norm2.', 'norm3.'],
        ignore_keys=['norm3.']))

# Fault tolerance, as the ImageNet configs: every random state in the
# checkpoints (--resume repeats the run); a NaN/inf loss stops the run before
# it reaches the weights. A child config that replaces custom_hooks keeps
# them with `custom_hooks = {{_base_.fault_tolerance_hooks}}`.
fault_tolerance_hooks = [
    dict(type='RandomStateHook'),
    dict(type='FiniteLossHook'),
]

# Sparse fine-tuning (reference backbone `sparse=True` in the 160k ADE20K and
# COCO configs): the backbone keeps the zero pattern of its sparse ImageNet
# weights, loaded by init_cfg before training; necks and heads stay dense.
custom_hooks = [
    dict(
        type='SparseTrainingHook',
        init='checkpoint',
        dynamic=False,
        scope='all',
        exclude=[r'^(?!backbone\.)'])
] + fault_tolerance_hooks
