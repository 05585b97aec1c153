import importlib.util
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint, save_checkpoint
from mmpretrain.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = """
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmslak'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmpretrain.SLaK',
                  arch=dict(depths=[1, 1, 1, 1], dims=[8, 16, 16, 24]),
                  width_factor=1.0, kernel_sizes=(11, 9, 7, 5),
                  small_kernel=3),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=5, in_channels=24))
"""


def _load_tool():
    path = osp.join(ROOT, 'tools', 'model_converters',
                    'reparameterize_model.py')
    spec = importlib.util.spec_from_file_location('reparameterize', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(cfg_file, **backbone_overrides):
    cfg = Config.fromfile(str(cfg_file))
    cfg.model.backbone.update(backbone_overrides)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model)


def test_reparameterize_tool_roundtrip(tmp_path):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(CONFIG)
    tool = _load_tool()
    model = _build(cfg_file)
    model.init_weights()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64), mode='tensor')  # BN stats
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    src = tmp_path / 'train.pth'
    save_checkpoint({'state_dict': model.state_dict()}, str(src))
    out = tmp_path / 'deploy.pth'
    assert tool.main([str(cfg_file), str(src), str(out)]) == 0

    deployed = _build(cfg_file, deploy=True)
    ckpt = load_checkpoint(deployed, str(out), strict=True)
    assert ckpt['meta']['deploy'] is True
    assert not any('small_conv' in k for k in ckpt['state_dict'])
    deployed.eval()
    with torch.no_grad():
        got = deployed(x, mode='tensor')
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_deploy_walker_switches_each_outermost_module_once():
    from mmslak.models import switch_to_deploy

    class Rep(torch.nn.Module):

        def __init__(self, deploy):
            super().__init__()
            self.deploy, self.calls = deploy, 0
            self.inner = torch.nn.Sequential(torch.nn.Identity())

        def switch_to_deploy(self):
            self.calls += 1
            self.deploy = True

    done, todo, nested = Rep(True), Rep(False), Rep(False)
    todo.inner.append(nested)  # switched by its parent, never walked into
    model = torch.nn.Sequential(done, torch.nn.Sequential(todo))
    assert switch_to_deploy(model) == 1
    assert (done.calls, todo.calls, nested.calls) == (0, 1, 0)
    assert switch_to_deploy(model) == 0  # already in deploy form


def test_reparameterize_tool_refuses_a_model_without_slak(tmp_path, capsys):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(
        CONFIG.split('model = dict(')[0] +
        "model = dict(type='ImageClassifier', backbone=dict(type='ResNet', "
        'depth=18, stem_channels=8, base_channels=8), neck=None, head=None)\n')
    src = tmp_path / 'resnet.pth'
    save_checkpoint({'state_dict': _build(cfg_file).state_dict()}, str(src))
    out = tmp_path / 'deploy.pth'
    assert _load_tool().main([str(cfg_file), str(src), str(out)]) == 1
    assert 'no module that can be re-parameterised' in capsys.readouterr().err
    assert not out.exists()
