"""mmslak.apis.init_model: the one config -> model builder."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmslak.apis import drop_pretrained_init, init_model, task_family
from mmslak.checkpoint import CheckpointMismatchError

TINY = dict(depths=[1, 1], dims=[8, 16], kernel_sizes=[7, 5])


def classifier_cfg(arch=TINY, init_cfg=None):
    return dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='SLaK', arch=arch, init_cfg=init_cfg),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=3,
                in_channels=arch['dims'][-1])))


def write_cfg(tmp_path, cfg, name='cfg.py'):
    path = tmp_path / name
    Config(cfg).dump(str(path))
    return str(path)


def reference_state(cfg, seed):
    """The weights of an independently built model (own registry call, in
    mmpretrain's scope whatever scope an earlier test left current)."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg['model'])
    model.init_weights()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_loads_checkpoint_and_sets_meta(tmp_path):
    cfg = classifier_cfg()
    state = reference_state(cfg, seed=1)
    ckpt = tmp_path / 'w.pth'
    meta = dict(dataset_meta=dict(classes=['a', 'b', 'c']))
    torch.save(dict(meta=meta, state_dict=state), ckpt)
    model = init_model(write_cfg(tmp_path, cfg), str(ckpt))
    got = model.state_dict()
    assert set(got) == set(state) and set(state) == set(got)
    for key, value in state.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)
    assert model.dataset_meta == dict(classes=['a', 'b', 'c'])
    assert model.cfg.model.type == 'ImageClassifier'
    assert not model.training
    assert next(model.parameters()).device == torch.device('cpu')


def test_reference_layout_meta_and_module_prefix(tmp_path):
    """A DDP ('module.') state dict and 0.x/2.x CLASSES meta load."""
    cfg = classifier_cfg()
    state = reference_state(cfg, seed=2)
    ckpt = tmp_path / 'w.pth'
    torch.save(
        dict(
            meta=dict(CLASSES=('x', 'y', 'z')),
            state_dict={
                'module.' + k: v
                for k, v in state.items()
            }), ckpt)
    model = init_model(Config(cfg), str(ckpt))
    torch.testing.assert_close(model.state_dict()['head.fc.weight'],
                               state['head.fc.weight'])
    assert model.dataset_meta == dict(classes=('x', 'y', 'z'))


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    other = dict(TINY, dims=[8, 24])
    state = reference_state(classifier_cfg(other), seed=0)
    ckpt = tmp_path / 'w.pth'
    torch.save(dict(state_dict=state), ckpt)
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        init_model(write_cfg(tmp_path, classifier_cfg()), str(ckpt))


def test_pretrained_init_is_dropped(tmp_path):
    init = dict(type='Pretrained', checkpoint=str(tmp_path / 'absent.pth'))
    cfg = classifier_cfg(init_cfg=init)
    model = init_model(write_cfg(tmp_path, cfg))
    assert model.backbone.init_cfg is None
    assert model.cfg.model.backbone.init_cfg == init  # config untouched
    model_cfg = dict(
        a=dict(init_cfg=[init, dict(type='Constant', val=1)]),
        pretrained='x.pth')
    assert drop_pretrained_init(model_cfg) == 2
    assert model_cfg == dict(
        a=dict(init_cfg=[dict(type='Constant', val=1)]), pretrained=None)


def test_segmentor_meta_from_test_dataset(tmp_path):
    cfg = dict(
        default_scope='mmseg',
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(
                type='mmpretrain.SLaK', arch=TINY, out_indices=(0, 1)),
            decode_head=dict(
                type='FCNHead',
                in_channels=16,
                in_index=1,
                channels=8,
                num_convs=1,
                num_classes=150)),
        test_dataloader=dict(dataset=dict(type='ADE20KDataset')))
    assert task_family(Config(cfg)) == 'mmseg'
    model = init_model(write_cfg(tmp_path, cfg))
    assert type(model).__name__ == 'EncoderDecoder'
    assert len(model.dataset_meta['classes']) == 150
    assert model.dataset_meta['classes'][0] == 'wall'  # ADE20K's first


def test_bad_config_type():
    with pytest.raises(TypeError, match='config must be'):
        init_model(42)
