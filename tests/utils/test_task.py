"""task_family: the one vocabulary (mmpretrain / mmseg / mmdet) for
configs and models."""
import pytest
import torch.nn as nn
from mmengine.config import Config

from mmslak.utils import task_family


@pytest.mark.parametrize('cfg, family', [
    (dict(default_scope='mmseg'), 'mmseg'),
    (dict(default_scope='mmdet'), 'mmdet'),
    (dict(model=dict(type='mmpretrain.ImageClassifier')), 'mmpretrain'),
    (dict(model=dict(type='ImageClassifier')), 'mmpretrain'),
    (dict(model=dict(type='EncoderDecoder')), 'mmseg'),
    (dict(model=dict(type='Foo', _scope_='mmdet')), 'mmdet'),
])
def test_config_family(cfg, family):
    assert task_family(Config(cfg)) == family


def test_config_family_unknown_names_the_keys():
    with pytest.raises(ValueError, match="default_scope.*'Foo'"):
        task_family(Config(dict(model=dict(type='Foo'))))


def test_model_family_from_the_upstream_base_class():
    from mmdet.models.detectors.base import BaseDetector
    from mmpretrain.models.classifiers.base import BaseClassifier
    from mmseg.models.segmentors.base import BaseSegmentor
    for base, family in ((BaseClassifier, 'mmpretrain'),
                         (BaseSegmentor, 'mmseg'), (BaseDetector, 'mmdet')):
        subclass = type('Mine', (base, ), {})  # a subclass counts too
        subclass.__abstractmethods__ = frozenset()
        model = subclass.__new__(subclass)
        nn.Module.__init__(model)
        assert task_family(model) == family
    assert task_family(nn.Conv2d(1, 1, 1)) is None  # a bare backbone
