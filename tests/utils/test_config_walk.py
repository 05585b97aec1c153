"""The one config walk (``edit_dicts``) behind ``syncbn_to_bn`` and
``drop_pretrained_init``: every nested dict, through lists and tuples."""
from mmengine.config import ConfigDict

from mmslak.apis import drop_pretrained_init
from mmslak.cli.dist import syncbn_to_bn
from mmslak.utils.config_walk import edit_dicts


def _cfg():
    return ConfigDict(
        model=dict(
            backbone=dict(
                norm_cfg=dict(type='SyncBN'),
                init_cfg=dict(type='Pretrained', checkpoint='a.pth')),
            neck=[dict(norm_cfg=dict(type='MMSyncBN')), 3, 'SyncBN'],
            head=(dict(
                norm_cfg=dict(type='BN'),
                init_cfg=[
                    dict(type='PretrainedStrict', checkpoint='b'),
                    dict(type='Normal', std=0.01)
                ]), ),
            pretrained='c.pth'))


def test_edit_dicts_visits_every_nested_dict_once():
    seen = []
    assert edit_dicts(_cfg(), lambda d: seen.append(sorted(d)) or 1) == 11
    # by hand: root, model, backbone, its norm_cfg and init_cfg, the neck's
    # dict and its norm_cfg, the head dict, its norm_cfg and 2 init_cfgs
    assert len(seen) == 11
    assert seen[:2] == [['model'], ['backbone', 'head', 'neck', 'pretrained']]
    assert edit_dicts([1, 'a', (None, )], lambda d: 1) == 0


def test_syncbn_to_bn_and_drop_pretrained():
    cfg = _cfg()
    assert syncbn_to_bn(cfg) == 2  # SyncBN, MMSyncBN; the string is left
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.neck[0].norm_cfg.type == 'BN'
    assert cfg.model.neck[2] == 'SyncBN'
    assert syncbn_to_bn(cfg) == 0
    # backbone init_cfg, the head's PretrainedStrict, model.pretrained
    assert drop_pretrained_init(cfg) == 3
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.head[0].init_cfg == [dict(type='Normal', std=0.01)]
    assert cfg.model.pretrained is None
    assert drop_pretrained_init(cfg) == 0
