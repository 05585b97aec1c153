"""ONNX export (tools/deployment/pytorch2onnx.py, mmslak/apis/export.py):
onnxruntime's outputs against the *training-form* PyTorch model (BN not
folded, 5x5 branch separate), on random and real images."""
import copy
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')

from mmslak.apis import export as onnx_export  # noqa: E402
from mmslak.models import switch_to_deploy  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = dict(depths=[1, 1, 2, 1], dims=[24, 48, 96, 192])


def _tool():
    path = osp.join(REPO, 'tools', 'deployment', 'pytorch2onnx.py')
    spec = importlib.util.spec_from_file_location('pytorch2onnx', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomise_bn(model):
    """Non-trivial BN statistics, so folding them is actually tested."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _classifier(num_classes=10):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    # in mmpretrain's scope whatever scope an earlier test left current
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = _build_classifier(MODELS, num_classes)
    model.init_weights()
    _randomise_bn(model)
    return model.eval()


def _build_classifier(MODELS, num_classes):
    return MODELS.build(
        dict(
            type='ImageClassifier',
            data_preprocessor=dict(
                type='ClsDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                to_rgb=True),
            backbone=dict(
                type='SLaK',
                arch=SMALL,
                kernel_sizes=(13, 11, 9, 7),
                small_kernel=3,
                layer_scale_init_value=1.0),
            head=dict(
                type='LinearClsHead', num_classes=num_classes,
                in_channels=249)))


def _ort_vs_oracle(path, oracle, x):
    """max |ort - oracle| / max |oracle|, oracle in float64."""
    got = onnx_export.onnx_session(path).run(None, {'input': x.numpy()})[0]
    with torch.no_grad():
        ref = oracle.double()(x.double(), mode='tensor').numpy()
    assert got.shape == ref.shape
    return np.abs(got - ref).max() / np.abs(ref).max()


def test_small_classifier_onnx_matches_training_form(tmp_path):
    from skimage import data
    model = _classifier()
    oracle = copy.deepcopy(model)  # training form, evaluated in float64
    assert switch_to_deploy(model) == 1
    assert not any('small_conv' in k for k in model.state_dict())
    out = str(tmp_path / 'cls.onnx')
    onnx_export.export_onnx(
        onnx_export.export_graph(model), torch.randn(1, 3, 96, 96), out, True)
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert 'Conv' in ops and all(
        n.domain in ('', 'ai.onnx') for n in onnx.load(out).graph.node), ops
    real = onnx_export.preprocess_image(model, data.coffee(), (224, 224))
    assert real.std() > 0.3  # a normalised photo, not a blank
    inputs = [torch.randn(2, 3, 128, 96), real]  # --dynamic: other shapes
    for x in inputs:
        err = _ort_vs_oracle(out, oracle, x)
        assert err <= 1e-4, err


@pytest.mark.parametrize('n,o', [(16, 6), (16, 3), (5, 2), (7, 7), (4, 6)])
def test_matmul_adaptive_pool_equals_torch(n, o):
    x = torch.randn(2, 3, n, n + 1, dtype=torch.float64)
    ref = F.adaptive_avg_pool2d(x, o)
    got = onnx_export._MatmulAdaptivePool(o)(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_tool_segmentor_and_detector(tmp_path, capsys):
    tool = _tool()
    for cfg in ('upernet_slak-demo_toy-ade.py',
                'faster-rcnn_slak-demo_toy-voc.py'):
        out = str(tmp_path / (cfg + '.onnx'))
        assert tool.main([
            osp.join(REPO, 'configs', 'demo', cfg), 'none', out, '--shape',
            '128', '128'
        ]) == 0
        text = capsys.readouterr().out
        errors = [
            float(line.rsplit(' ', 1)[1]) for line in text.splitlines()
            if 'max relative error' in line
        ]
        # random and real image, 1 (seg) or 5 (FPN levels) outputs each
        assert len(errors) in (2, 10), text
        assert max(errors) <= 1e-4, text


def test_tool_rejects_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        _tool().main([
            osp.join(REPO, 'configs', 'demo', 'upernet_slak-demo_toy-ade.py'),
            str(tmp_path / 'nope.pth'),
            str(tmp_path / 'x.onnx')
        ])


@pytest.mark.slow
def test_tool_slak_tiny_224(tmp_path, capsys):
    out = str(tmp_path / 'slak_t.onnx')
    cfg = osp.join(REPO, 'configs', 'slak', 'slak-tiny_4xb128-accum8_in1k.py')
    assert _tool().main([cfg, 'none', out]) == 0
    text = capsys.readouterr().out
    errors = [
        float(line.rsplit(' ', 1)[1]) for line in text.splitlines()
        if 'max relative error' in line
    ]
    assert len(errors) == 2 and max(errors) <= 1e-4, text


def test_onnx_errors_abs_and_relative_by_hand():
    """A fake session off by known amounts: (max abs, max abs / max |ref|)
    per output, by hand."""

    class Graph(nn.Module):

        def forward(self, x):
            return x * 2, x - 1

    class Output:

        def __init__(self, name):
            self.name = name

    class Session:

        def run(self, _, feed):
            x = feed['input']
            return [x * 2 + np.array([0., 0.5, -0.25]), x - 1]

        def get_outputs(self):
            return [Output('a'), Output('b')]

    x = torch.tensor([1., -4., 2.])  # a: [2, -8, 4]; b: [0, -5, 1]
    errors = onnx_export.onnx_errors(Graph(), Session(), x)
    assert errors == {'a': (0.5, 0.5 / 8), 'b': (0.0, 0.0)}
