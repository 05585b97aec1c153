"""Dicts that mmengine scopes 'mmslak' (from configs inherited as
``mmslak::<path>``) build as in the run's default scope."""
import pytest
from mmengine.registry import MODELS, TRANSFORMS, init_default_scope


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', 'mmpretrain'])
def test_scoped_dict_builds_in_the_run_scope(scope):
    import mmslak  # noqa: F401
    init_default_scope(scope)
    built = TRANSFORMS.build(dict(type='LoadImageFromFile', _scope_='mmslak'))
    expected = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    assert type(built) is type(expected)
    if scope != 'mmpretrain':  # each family has its own LoadAnnotations
        ann = TRANSFORMS.build(dict(type='LoadAnnotations', _scope_='mmslak'))
        assert type(ann).__module__.startswith(scope + '.')


def test_prefixed_and_unknown_types():
    import mmslak  # noqa: F401
    init_default_scope('mmseg')
    slak = MODELS.build(
        dict(
            type='mmpretrain.SLaK',
            _scope_='mmslak',
            arch=dict(depths=[1], dims=[8]),
            kernel_sizes=[5]))
    assert type(slak).__name__ == 'SLaK'
    with pytest.raises(KeyError, match='NoSuchModel'):
        MODELS.build(dict(type='NoSuchModel', _scope_='mmslak'))
