"""Every config under configs/ loads and builds its model, optimizer wrapper,
train / test pipelines and custom hooks (ImageNet weights left out: no
checkpoint files exist in a fresh clone)."""
import copy
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, MODELS, init_default_scope

import mmslak  # noqa: F401
from mmslak.apis import task_family

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p.split(osp.sep))


def find_pipelines(dataset_cfg):
    """All pipelines of a (possibly wrapped / concatenated) dataset cfg."""
    if 'pipeline' in dataset_cfg:
        yield dataset_cfg['pipeline']
    if 'dataset' in dataset_cfg:
        yield from find_pipelines(dataset_cfg['dataset'])
    for sub in dataset_cfg.get('datasets', []):
        yield from find_pipelines(sub)


def test_every_paper_row_has_a_config():
    names = {osp.basename(p) for p in CONFIGS}
    for name in [
            'slak-tiny_4xb128-accum8_in1k.py',
            'slak-small_8xb64-accum8_in1k.py',
            'slak-base_16xb32-accum8_in1k.py',
            'slak-base_32xb32-30e_in1k-384px.py',
            'slak-tiny-k31_4xb128-accum8-120e_in1k.py',
            'slak-tiny-k51_4xb128-accum8-120e_in1k.py',
            'slak-tiny-k61_4xb128-accum8-120e_in1k.py',
            'upernet_slak-tiny_8xb2-160k_ade20k-512x512.py',
            'upernet_slak-small_8xb2-160k_ade20k-512x512.py',
            'upernet_slak-base_8xb2-160k_ade20k-512x512.py',
            'upernet_slak-tiny-120e-pre_4xb4-80k_ade20k-512x512.py',
            'upernet_slak_ade20k.py',
            'faster-rcnn_slak-tiny_fpn_8xb2-36e_voc0712.py',
            'cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-1x_coco.py',
            'cascade-mask-rcnn_slak-tiny_fpn_4conv1fc-giou_8xb2-3x_coco.py'
    ]:
        assert name in names, name


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds(path):
    cfg = Config.fromfile(osp.join(REPO, path))
    imports = cfg.custom_imports['imports']
    family = task_family(cfg)
    # `import mmslak` registers the checked datasets too
    assert imports == ['mmslak']
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset = cfg[loader]['dataset']
        for sub in dataset.get('datasets', [dataset]):
            assert family == 'mmpretrain' or \
                sub['type'].startswith('Checked'), (loader, sub['type'])
    init_default_scope(family)

    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None  # no checkpoint files in a clone
    model = MODELS.build(model_cfg)
    assert type(model.backbone).__name__ == 'SLaK'
    if family != 'mmpretrain':
        norms = {type(m).__name__ for m in model.backbone.modules()}
        assert 'SyncBatchNorm' in norms, 'downstream backbones use SyncBN'
        assert cfg.model.backbone.init_cfg is None or \
            cfg.model.backbone.init_cfg['prefix'] == 'backbone.'
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    n_params = sum(p.numel() for g in wrapper.optimizer.param_groups
                   for p in g['params'])
    assert n_params == sum(p.numel() for p in model.parameters()
                           if p.requires_grad)

    for loader in ('train_dataloader', 'test_dataloader'):
        pipelines = list(find_pipelines(cfg[loader]['dataset']))
        assert pipelines, loader
        for pipeline in pipelines:
            transforms = Compose(pipeline).transforms
            assert len(transforms) == len(pipeline)

    for hook_cfg in cfg.get('custom_hooks', []):
        if HOOKS.get(hook_cfg['type']) is None:
            pytest.skip(f'{hook_cfg["type"]} is not registered yet')
        hook_cfg = copy.deepcopy(hook_cfg)
        hook_cfg.pop('priority', None)
        assert HOOKS.build(hook_cfg) is not None
