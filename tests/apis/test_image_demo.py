"""demo/image_demo.py on real photos (scikit-image) with models trained a
few iterations on the toy data: the output file, and predictions equal to
calling the model directly on a hand-made input (resize with mmcv, mean/std
by hand), also from a deploy-form checkpoint."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch

from mmslak.apis import init_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
pytestmark = [pytest.mark.slow, pytest.mark.child_process]


def _script(*parts):
    path = osp.join(REPO, *parts)
    spec = importlib.util.spec_from_file_location(parts[-1][:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    env = dict(os.environ, MMSLAK_TOY_DATA=str(root / 'toy'), PYTHONPATH=REPO)
    subprocess.run([
        sys.executable, 'tools/dataset_converters/make_toy_datasets.py',
        '--out',
        str(root / 'toy'), '--tasks', 'ade', 'voc', '--num-train', '8',
        '--num-val', '4'
    ],
                   cwd=REPO,
                   check=True)
    runs = {
        'seg':
        ('configs/demo/upernet_slak-demo_toy-ade.py', 'train_cfg.max_iters=6'),
        'det': ('configs/demo/faster-rcnn_slak-demo_toy-voc.py',
                'train_cfg.max_epochs=1'),
    }
    ckpts = {}
    for name, (cfg, option) in runs.items():
        work = str(root / name)
        out = subprocess.run([
            sys.executable, '-c', 'import mmslak, runpy, sys; '
            'print("MMSLAK", mmslak.__file__); sys.argv = sys.argv[1:]; '
            'runpy.run_path(sys.argv[0], run_name="__main__")',
            'tools/train.py', cfg, '--work-dir', work, '--cfg-options', option
        ],
                             cwd=REPO,
                             env=env,
                             check=True,
                             capture_output=True,
                             text=True).stdout
        assert f'MMSLAK {osp.join(REPO, "mmslak")}' in out
        with open(osp.join(work, 'last_checkpoint')) as f:
            ckpts[name] = (osp.join(REPO, cfg), f.read().strip())
    os.environ['MMSLAK_TOY_DATA'] = str(root / 'toy')  # the configs read it
    yield root, ckpts
    os.environ.pop('MMSLAK_TOY_DATA', None)


def _photo(path, name, crop=None):
    from skimage import data
    img = getattr(data, name)()
    if crop is not None:
        img = img[:crop, :crop]
    mmcv.imwrite(np.ascontiguousarray(img[..., ::-1]), str(path))
    return img.shape[:2]


def _normalised(bgr, divisor=1):
    """Hand pre-processing: BGR -> RGB, (x - mean) / std, CHW, zero pad."""
    x = (bgr[..., ::-1].astype(np.float64) - MEAN) / STD
    x = torch.from_numpy(x.transpose(2, 0, 1).copy()).float()[None]
    h, w = x.shape[-2:]
    ph, pw = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    return torch.nn.functional.pad(x, (0, pw - w, 0, ph - h))


def _demo(args, capsys):
    assert _script('demo', 'image_demo.py').main([str(a) for a in args]) == 0
    return capsys.readouterr().out


def _deploy(cfg, ckpt, out):
    tool = _script('tools', 'model_converters', 'reparameterize_model.py')
    assert tool.main([cfg, ckpt, str(out)]) == 0
    return str(out)


def _seg_direct(cfg, ckpt, img_path):
    from mmseg.structures import SegDataSample
    model = init_model(cfg, ckpt)
    bgr = mmcv.imread(img_path)
    small = mmcv.imrescale(bgr, (512, 128))
    meta = dict(
        ori_shape=bgr.shape[:2],
        img_shape=small.shape[:2],
        pad_shape=small.shape[:2])
    with torch.no_grad():
        out = model.predict(_normalised(small), [SegDataSample(metainfo=meta)])
    return out[0].pred_sem_seg.data[0].numpy()


def test_demo_segmentation_training_and_deploy_form(toy, tmp_path, capsys):
    from mmslak.apis.inferencers import build_inferencer, inference_image
    _, ckpts = toy
    cfg, ckpt = ckpts['seg']
    img = tmp_path / 'coffee.jpg'
    h, w = _photo(img, 'coffee')
    out_file = tmp_path / 'seg.png'
    text = _demo([img, cfg, ckpt, '--out-file', out_file], capsys)
    vis = mmcv.imread(str(out_file))
    assert vis.shape[:2] == (h, w) and vis.std() > 10
    assert '% of the pixels' in text
    expected = _seg_direct(cfg, ckpt, str(img))
    deploy = _deploy(cfg, ckpt, tmp_path / 'deploy.pth')
    for weights in (ckpt, deploy):
        sample, _ = inference_image(build_inferencer(cfg, weights), str(img))
        got = sample.pred_sem_seg.data[0].numpy()
        assert got.shape == expected.shape == (h, w)
        assert (got == expected).mean() > 0.999, weights
    assert not any('small_conv' in k for k in torch.load(deploy)['state_dict'])


def _det_direct(cfg, ckpt, img_path):
    from mmdet.structures import DetDataSample
    model = init_model(cfg, ckpt)
    bgr = mmcv.imread(img_path)
    small, scale = mmcv.imrescale(bgr, (320, 160), return_scale=True)
    x = _normalised(small, divisor=32)
    meta = dict(
        ori_shape=bgr.shape[:2],
        img_shape=small.shape[:2],
        pad_shape=tuple(x.shape[-2:]),
        batch_input_shape=tuple(x.shape[-2:]),
        scale_factor=(small.shape[1] / bgr.shape[1],
                      small.shape[0] / bgr.shape[0]))
    with torch.no_grad():
        out = model.predict(x, [DetDataSample(metainfo=meta)], rescale=True)
    return out[0].pred_instances


def test_demo_detection_training_and_deploy_form(toy, tmp_path, capsys):
    from mmslak.apis.inferencers import build_inferencer, inference_image
    _, ckpts = toy
    cfg, ckpt = ckpts['det']
    img = tmp_path / 'astronaut.jpg'
    h, w = _photo(img, 'astronaut')
    out_file = tmp_path / 'det.png'
    text = _demo([img, cfg, ckpt, '--out-file', out_file, '--score-thr', '0'],
                 capsys)
    assert mmcv.imread(str(out_file)).shape[:2] == (h, w)
    expected = _det_direct(cfg, ckpt, str(img))
    assert len(expected) > 0
    first = expected.bboxes[0].tolist()
    assert f'{first[0]:.1f}' in text.splitlines()[0], text
    deploy = _deploy(cfg, ckpt, tmp_path / 'deploy.pth')
    for weights in (ckpt, deploy):
        sample, _ = inference_image(
            build_inferencer(cfg, weights), str(img), pred_score_thr=0.)
        got = sample.pred_instances
        n = min(len(expected), 10)
        assert len(got) == len(expected)
        torch.testing.assert_close(
            got.bboxes[:n], expected.bboxes[:n], atol=0.05, rtol=1e-4)
        torch.testing.assert_close(
            got.scores[:n], expected.scores[:n], atol=1e-4, rtol=1e-3)
        assert torch.equal(got.labels[:n], expected.labels[:n])


def test_demo_classification_top5(tmp_path, capsys):
    from mmengine.runner import save_checkpoint
    cfg = osp.join(REPO, 'configs', 'slak', 'slak-tiny_4xb128-accum8_in1k.py')
    narrow = {
        'model.backbone.arch':
        dict(_delete_=True, depths=[1, 1, 2, 1], dims=[24, 48, 96, 192]),
        'model.backbone.kernel_sizes': (13, 11, 9, 7),
        'model.backbone.small_kernel':
        3,
        'model.backbone.layer_scale_init_value':
        1.0,
        'model.head.in_channels':
        249,
    }
    model = init_model(cfg, cfg_options=narrow)
    model.init_weights()
    cfg_file = str(tmp_path / 'cls.py')
    model.cfg.dump(cfg_file)
    ckpt = str(tmp_path / 'cls.pth')
    save_checkpoint({'state_dict': model.state_dict()}, ckpt)
    img = tmp_path / 'astronaut.jpg'
    _photo(img, 'astronaut', crop=256)  # 256: the test resize is a no-op
    text = _demo([img, cfg_file, ckpt, '--out-file', tmp_path / 'c.png'],
                 capsys)
    # direct: centre crop 224 of the 256 photo, mean/std by hand
    x = _normalised(mmcv.imread(str(img))[16:240, 16:240])
    with torch.no_grad():
        scores = model(x, mode='tensor').softmax(-1)[0]
    top = torch.topk(scores, 5)
    classes = model.dataset_meta['classes']
    # (found anywhere on a line: a log line without a newline may precede)
    lines = re.findall(r'top-[1-5]: .*', text)
    assert [ln[:5] for ln in lines] == [f'top-{i}' for i in range(1, 6)]
    for line, s, j in zip(lines, top.values, top.indices):
        assert classes[j] in line and f'({float(s):.4f})' in line, (line, j)
    assert mmcv.imread(str(tmp_path / 'c.png')).shape[:2] == (256, 256)
