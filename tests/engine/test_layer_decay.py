"""LayerDecayOptimWrapperConstructor: lr of every parameter vs the formula
``base_lr * rate ** (num_layers + 1 - layer_id)`` with the layer ids written
out by hand here (ConvNeXt / SLaK convention), for classifier, segmentor
and detector."""
import re

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmslak  # noqa: F401

BASE_LR = 1e-3
WD = 0.05
# depths (2, 1, 7, 1): stage 3 blocks 0..6 -> layer ids 3,3,3,4,4,4,5
BACKBONE = dict(
    type='mmpretrain.SLaK',
    arch=dict(depths=[2, 1, 7, 1], channels=[8, 8, 16, 16]),
    width_factor=1.0,
    kernel_sizes=(7, 7, 7, 7),
    small_kernel=3,
    init_cfg=None)
CLASSIFIER = dict(
    type='ImageClassifier',
    backbone=BACKBONE,
    head=dict(type='LinearClsHead', num_classes=5, in_channels=16))


def expected_layer_id(name, decay_type, num_layers=6):
    """Independent restatement of the paper's layer ids."""
    m = re.match(r'backbone\.(downsample_layers|stages)\.(\d+)\.(\d+)', name)
    if m is None:
        return num_layers + 1  # heads, necks, output norms
    kind, stage, block = m.group(1), int(m.group(2)), int(m.group(3))
    if decay_type == 'stage_wise':
        return 0 if kind == 'downsample_layers' else stage + 1
    if kind == 'downsample_layers':
        return {0: 0, 1: 2, 2: 3, 3: num_layers}[stage]
    return {0: 1, 1: 2, 2: 3 + block // 3, 3: num_layers}[stage]


def build(model_cfg,
          scope,
          decay_type,
          num_layers=6,
          optimizer=None,
          paramwise_cfg=None):
    """The model and its optimizer wrapper from our constructor (AdamW and
    ``decay_rate`` 0.9 unless ``optimizer`` / ``paramwise_cfg`` given)."""
    init_default_scope(scope)
    from mmengine.registry import MODELS
    model = MODELS.build(model_cfg)
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=optimizer
            or dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=paramwise_cfg or dict(
                decay_rate=0.9, decay_type=decay_type, num_layers=num_layers)))
    return model, wrapper


def check_groups(model, wrapper, decay_type, must_see):
    lr_of, wd_of = {}, {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lr_of[id(p)] = group['lr']
            wd_of[id(p)] = group['weight_decay']
    seen_ids = set()
    for name, p in model.named_parameters():
        layer_id = expected_layer_id(name, decay_type)
        seen_ids.add(layer_id)
        want = BASE_LR * 0.9**(6 + 1 - layer_id)
        assert lr_of[id(p)] == pytest.approx(want, rel=1e-12), name
        want_wd = 0. if (p.ndim == 1 or name.endswith('.bias')) else WD
        assert wd_of[id(p)] == want_wd, name
    assert len(lr_of) == len(list(model.parameters()))
    for prefix in must_see:  # non-backbone params got the full lr
        params = [
            p for n, p in model.named_parameters() if n.startswith(prefix)
        ]
        assert params, prefix
        assert all(lr_of[id(p)] == pytest.approx(BASE_LR) for p in params)
    want_ids = (
        set(range(0, 8)) if decay_type == 'layer_wise' else {0, 1, 2, 3, 4, 7})
    assert seen_ids == want_ids


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_segmentor(decay_type):
    norm = dict(type='BN', requires_grad=True)
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(
            BACKBONE, out_indices=(0, 1, 2, 3), gap_before_final_norm=False),
        decode_head=dict(
            type='UPerHead',
            in_channels=[8, 8, 16, 16],
            in_index=[0, 1, 2, 3],
            channels=8,
            num_classes=3,
            norm_cfg=norm),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=16,
            in_index=2,
            channels=8,
            num_classes=3,
            norm_cfg=norm))
    model, wrapper = build(cfg, 'mmseg', decay_type)
    check_groups(model, wrapper, decay_type,
                 ['decode_head.', 'auxiliary_head.', 'backbone.norm0'])


def test_classifier():
    cfg = dict(
        type='ImageClassifier',
        backbone=BACKBONE,
        neck=None,
        head=dict(type='LinearClsHead', num_classes=5, in_channels=16))
    model, wrapper = build(cfg, 'mmpretrain', 'layer_wise')
    check_groups(model, wrapper, 'layer_wise', ['head.', 'backbone.norm3.'])


def test_detector():
    cfg = dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(
            BACKBONE, out_indices=(1, 2, 3), gap_before_final_norm=False),
        neck=dict(
            type='FPN',
            in_channels=[8, 16, 16],
            out_channels=8,
            start_level=0,
            add_extra_convs='on_output',
            num_outs=4),
        bbox_head=dict(
            type='RetinaHead',
            num_classes=3,
            in_channels=8,
            stacked_convs=1,
            feat_channels=8,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=4,
                scales_per_octave=1,
                ratios=[1.0],
                strides=[8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            loss_bbox=dict(type='L1Loss')))
    model, wrapper = build(cfg, 'mmdet', 'layer_wise')
    check_groups(model, wrapper, 'layer_wise', ['neck.', 'bbox_head.'])


def test_frozen_params_are_left_out():
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(BACKBONE, frozen_stages=1),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=16))
    model, wrapper = build(cfg, 'mmpretrain', 'layer_wise')
    in_optim = {
        id(p)
        for g in wrapper.optimizer.param_groups
        for p in g['params']
    }
    for name, p in model.named_parameters():
        assert (id(p) in in_optim) == p.requires_grad, name
    assert not model.backbone.stages[0][0].pwconv1.weight.requires_grad


def test_stem_to_head_lr_ratio_is_rate_to_the_depth():
    model, wrapper = build(CLASSIFIER, 'mmpretrain', 'layer_wise')
    stem = [g for g in wrapper.optimizer.param_groups if g['layer_id'] == 0][0]
    head = [g for g in wrapper.optimizer.param_groups if g['layer_id'] == 7][0]
    torch.testing.assert_close(stem['lr'] / head['lr'], 0.9**7)


def test_one_step_under_a_scheduler_moves_each_param_by_its_lr():
    """A real SGD step after a scheduler step (x0.1): every parameter moves
    by exactly base_lr * 0.1 * 0.9 ** (7 - layer_id) per unit gradient."""
    from mmengine.optim import MultiStepLR
    model, wrapper = build(
        CLASSIFIER,
        'mmpretrain',
        'layer_wise',
        optimizer=dict(type='SGD', lr=BASE_LR, momentum=0., weight_decay=0.))
    scheduler = MultiStepLR(wrapper, milestones=[1], gamma=0.1)
    scheduler.step()  # epoch 1: every group's lr x 0.1
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # no weight-decay term
            p.grad = torch.ones_like(p)
    wrapper.step()
    for name, p in model.named_parameters():
        want = BASE_LR * 0.1 * 0.9**(7 - expected_layer_id(name, 'layer_wise'))
        torch.testing.assert_close(
            p.detach(), torch.full_like(p, -want), rtol=1e-5, atol=0), name


KEYS = ("('decay_rate', 'layer_decay_rate', 'decay_type', 'num_layers', "
        "'bias_decay_mult', 'norm_decay_mult', 'flat_decay_mult', "
        "'custom_keys')")


@pytest.mark.parametrize('paramwise_cfg, error, message', [
    (dict(decay_type='layer_wise', num_layers=6), ValueError,
     'LayerDecayOptimWrapperConstructor needs paramwise_cfg.decay_rate in '
     "(0, 1] (e.g. 0.9); got paramwise_cfg={'decay_type': 'layer_wise', "
     "'num_layers': 6}"),
    (dict(decay_rate=0.9, decay_type='block_wise'), ValueError,
     "decay_type must be one of ('layer_wise', 'stage_wise'), got "
     "'block_wise'"),
    (dict(decay_rate=0.9, num_layers=12), ValueError,
     'paramwise_cfg.num_layers=12 does not match the 6 layers of the '
     'backbone SLaK (get_layer_depth)'),
    (dict(decay_rate=0.9, decay_type='stage_wise'), ValueError,
     "decay_type='stage_wise' needs paramwise_cfg.num_layers (6 for SLaK-T, "
     '12 for SLaK-S/B)'),
    (dict(decay_rate=0.9, lr_mult=2., zz=1), ValueError,
     'LayerDecayOptimWrapperConstructor does not support the paramwise_cfg '
     f"keys ['lr_mult', 'zz'] (supported: {KEYS})"),
    (dict(decay_rate=1.5), ValueError,
     'LayerDecayOptimWrapperConstructor needs paramwise_cfg.decay_rate in '
     "(0, 1] (e.g. 0.9); got paramwise_cfg={'decay_rate': 1.5}"),
    (dict(decay_rate=0.), ValueError,
     'LayerDecayOptimWrapperConstructor needs paramwise_cfg.decay_rate in '
     "(0, 1] (e.g. 0.9); got paramwise_cfg={'decay_rate': 0.0}"),
])
def test_bad_config_message(paramwise_cfg, error, message):
    init_default_scope('mmpretrain')
    from mmengine.registry import MODELS
    model = MODELS.build(dict(type='ImageClassifier', backbone=BACKBONE))
    with pytest.raises(error) as info:
        build_optim_wrapper(
            model,
            dict(
                optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
                constructor='LayerDecayOptimWrapperConstructor',
                paramwise_cfg=paramwise_cfg))
    assert str(info.value) == message


@pytest.mark.parametrize('num_layers', [0, 2, -1, 6.5, True])
def test_stage_wise_num_layers_below_the_stages_is_refused(num_layers):
    """Below 3 (4 stages: ids 1..4 against the head's num_layers + 1) a
    stage would train above the base lr; the error names the key and the
    minimum."""
    model = _classifier()
    with pytest.raises(ValueError) as info:
        _wrapper(model, decay_type='stage_wise', num_layers=num_layers)
    message = str(info.value)
    assert 'paramwise_cfg.num_layers' in message
    assert 'minimum for this model is 3' in message
    assert f'got {num_layers!r}' in message
    assert re.search(r'\bSLaK\b(?!-)', message)  # the backbone, by class
    assert 'above the base lr' in message  # why


def test_stage_wise_without_stages_takes_any_num_layers_from_zero():
    """No stages (a plain backbone): nothing can exceed the head, so 0 is
    the minimum; a model with no parameter at all reaches the optimizer's
    own refusal, not an error of ours."""
    model = _Plain()
    groups = _groups_by_name(
        model, _wrapper(model, decay_type='stage_wise', num_layers=0))
    assert {g['lr'] for g in groups.values()} == {BASE_LR}
    empty = torch.nn.Module()
    empty.backbone = torch.nn.Identity()
    with pytest.raises(ValueError, match='empty parameter list'):
        _wrapper(empty, decay_type='stage_wise', num_layers=0)


def test_stage_wise_smallest_num_layers_keeps_every_lr_at_most_base():
    model = _classifier()
    groups = _groups_by_name(
        model, _wrapper(model, decay_type='stage_wise', num_layers=3))
    # hand formula: stage i at 0.9 ** (3 + 1 - (i + 1)), the last at 1
    for name, group in groups.items():
        m = re.match(r'backbone\.stages\.(\d+)\.', name)
        if m:
            want = BASE_LR * 0.9**(3 - int(m.group(1)))
            assert group['lr'] == pytest.approx(want, rel=1e-12), name
    assert max(g['lr'] for g in groups.values()) == pytest.approx(BASE_LR)


def _classifier():
    init_default_scope('mmpretrain')
    from mmengine.registry import MODELS
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=BACKBONE,
            head=dict(type='LinearClsHead', num_classes=5, in_channels=16)))


@pytest.mark.parametrize('optimizer', [
    dict(type='AdamW', lr=BASE_LR),
    dict(type='AdamW', lr=BASE_LR, weight_decay=None), None
])
def test_missing_weight_decay_is_a_clear_error(optimizer):
    cfg = dict(
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(decay_rate=0.9))
    if optimizer is not None:
        cfg['optimizer'] = optimizer
    with pytest.raises(ValueError) as info:
        build_optim_wrapper(_classifier(), cfg)
    assert str(info.value) == (
        'LayerDecayOptimWrapperConstructor needs optim_wrapper.optimizer.'
        f'weight_decay (e.g. 0.05; 0 for none); got optimizer={optimizer}')


def test_mmpretrain_base_fails_without_weight_decay_with_a_bare_key_error():
    """Why the check above exists: mmpretrain's own constructor (our base
    class) builds its debug log from every group's weight_decay."""
    with pytest.raises(KeyError, match='weight_decay'):
        build_optim_wrapper(
            _classifier(),
            dict(
                optimizer=dict(type='AdamW', lr=BASE_LR),
                constructor='LearningRateDecayOptimWrapperConstructor',
                paramwise_cfg=dict(layer_decay_rate=0.9)))


def _groups_by_name(model, wrapper):
    group_of = {
        id(p): g
        for g in wrapper.optimizer.param_groups
        for p in g['params']
    }
    return {n: group_of[id(p)] for n, p in model.named_parameters()}


def _wrapper(model, weight_decay=WD, **paramwise):
    return build_optim_wrapper(
        model,
        dict(
            optimizer=dict(
                type='AdamW', lr=BASE_LR, weight_decay=weight_decay),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(decay_rate=0.9, **paramwise)))


def test_zero_weight_decay_is_zero_for_every_group():
    model = _classifier()
    groups = _groups_by_name(model, _wrapper(model, weight_decay=0))
    assert {g['weight_decay'] for g in groups.values()} == {0}
    for name, g in groups.items():
        want = BASE_LR * 0.9**(7 - expected_layer_id(name, 'layer_wise'))
        assert g['lr'] == pytest.approx(want, rel=1e-12), name


def test_flat_decay_mult_given_biases_still_get_none():
    # the user's flat_decay_mult applies to 1-D weights; biases keep the
    # default bias_decay_mult 0 (mmpretrain checks bias before flat)
    model = _classifier()
    groups = _groups_by_name(model, _wrapper(model, flat_decay_mult=0.5))
    kinds = set()
    for name, p in model.named_parameters():
        if name.endswith('.bias'):
            want, kind = 0., 'bias'
        elif p.ndim == 1:
            want, kind = WD * 0.5, 'flat'
        else:
            want, kind = WD, 'full'
        kinds.add(kind)
        assert groups[name]['weight_decay'] == pytest.approx(
            want, rel=1e-12, abs=0), name
    assert kinds == {'bias', 'flat', 'full'}
    # and the other way round
    groups = _groups_by_name(model, _wrapper(model, bias_decay_mult=0.3))
    for name, p in model.named_parameters():
        want = WD * 0.3 if name.endswith('.bias') else (
            0. if p.ndim == 1 else WD)
        assert groups[name]['weight_decay'] == pytest.approx(
            want, rel=1e-12, abs=0), name


def test_decay_rate_one_is_allowed_and_flat():
    model = _classifier()
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(decay_rate=1)))
    groups = _groups_by_name(model, wrapper)
    assert {g['lr'] for g in groups.values()} == {BASE_LR}


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_bare_backbone(decay_type):
    init_default_scope('mmpretrain')
    from mmengine.registry import MODELS
    backbone = MODELS.build(BACKBONE)
    groups = _groups_by_name(
        backbone, _wrapper(backbone, decay_type=decay_type, num_layers=6))
    seen = set()
    for name in groups:
        layer_id = expected_layer_id('backbone.' + name, decay_type)
        seen.add(layer_id)
        want = BASE_LR * 0.9**(7 - layer_id)
        assert groups[name]['lr'] == pytest.approx(want, rel=1e-12), name
    assert seen == (
        set(range(8)) if decay_type == 'layer_wise' else {0, 1, 2, 3, 4, 7})


class _Plain(torch.nn.Module):
    """A model whose backbone has no get_layer_depth."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)


def test_model_without_backbone_is_refused_by_name():
    with pytest.raises(TypeError) as info:
        _wrapper(torch.nn.Linear(2, 2))
    assert str(info.value) == (
        'LayerDecayOptimWrapperConstructor needs a model with a `backbone` '
        'attribute (ImageClassifier, EncoderDecoder, a detector) or a '
        'backbone with `get_layer_depth`; got Linear')


def test_layer_wise_needs_get_layer_depth_stage_wise_does_not():
    with pytest.raises(TypeError) as info:
        _wrapper(_Plain())
    assert str(info.value) == (
        "decay_type='layer_wise' needs a backbone with `get_layer_depth`; "
        'Linear has none')
    model = _Plain()
    groups = _groups_by_name(
        model, _wrapper(model, decay_type='stage_wise', num_layers=6))
    # no stages nor downsampling layers: all at layer num_layers + 1
    assert {
        n: g['lr']
        for n, g in groups.items()
    } == {
        'backbone.weight': BASE_LR,
        'backbone.bias': BASE_LR
    }


def test_mmpretrain_keys_pass_through():
    """The subclass keeps mmpretrain's options: its ``layer_decay_rate``
    name and ``custom_keys`` decay multipliers."""
    model, wrapper = build(
        CLASSIFIER,
        'mmpretrain',
        None,
        paramwise_cfg=dict(
            layer_decay_rate=0.9,
            custom_keys={'head.fc.weight': dict(decay_mult=0.5)}))
    group_of = {
        id(p): g
        for g in wrapper.optimizer.param_groups
        for p in g['params']
    }
    head = group_of[id(model.head.fc.weight)]
    assert head['weight_decay'] == pytest.approx(WD * 0.5)
    assert head['lr'] == pytest.approx(BASE_LR)
    stem = group_of[id(model.backbone.downsample_layers[0][0].weight)]
    assert stem['lr'] == pytest.approx(BASE_LR * 0.9**7)
    assert stem['weight_decay'] == WD
