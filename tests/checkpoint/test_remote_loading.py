"""A checkpoint reached through a URL is read weights-only, everywhere.

No network: the payload is put in torch's hub cache (``TORCH_HOME``) under
the URL's file name, where mmengine's HTTP loader (and ours) look first.
Each entry point must refuse it, name the URL, and the payload's side
effect (creating a file) must not happen.
"""
import os
import os.path as osp
import pathlib

import pytest
import torch
from mmengine.runner import CheckpointLoader, load_checkpoint
from mmengine.runner.checkpoint import (get_external_models, get_mmcls_models,
                                        get_torchvision_models)

import mmslak  # noqa: F401
from mmslak.checkpoint import (REMOTE_PREFIXES, UnsafeCheckpointError,
                               load_weights)
from mmslak.models import SLaK

URL = 'https://example.invalid/models/evil-slak.pth'


class _TouchOnLoad:
    """Unpickling this creates ``path`` (stands for arbitrary code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path), ))


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_arch):
    """An empty torch hub cache under tmp_path; returns a function that
    plants a payload checkpoint for a URL and the marker it would touch."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    marker = tmp_path / 'payload_ran'

    def plant(url: str, payload: bool = True) -> str:
        cache = osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(url))
        os.makedirs(osp.dirname(cache), exist_ok=True)
        model = SLaK(arch=tiny_arch, width_factor=1.0)
        state = {f'backbone.{k}': v for k, v in model.state_dict().items()}
        ckpt = dict(state_dict=state)
        if payload:
            ckpt['meta'] = _TouchOnLoad(str(marker))
        torch.save(ckpt, cache)
        return cache

    plant.marker = marker
    return plant


def _refused(call, url: str, marker: pathlib.Path) -> str:
    with pytest.raises(UnsafeCheckpointError) as info:
        call()
    assert url in str(info.value)
    assert 'pathlib.Path' in str(info.value)
    assert not marker.exists(), 'the payload ran'
    return str(info.value)


def test_payload_is_live(hub):
    # the planted file really runs code when unpickled without restriction
    cache = hub(URL)
    torch.load(cache, weights_only=False)
    assert hub.marker.exists()


def test_every_remote_scheme_of_mmengine_is_ours():
    from mmslak.checkpoint import remote
    ours = {
        p
        for prefixes in REMOTE_PREFIXES
        for p in ((prefixes, ) if isinstance(prefixes, str) else prefixes)
    }
    mmengine_schemes = set(CheckpointLoader._schemes) - {''}
    assert ours == mmengine_schemes
    for prefix in mmengine_schemes:
        assert CheckpointLoader._schemes[prefix].__module__ == remote.__name__


def test_http_url_through_mmengine_load_checkpoint(hub):
    hub(URL)
    _refused(lambda: load_checkpoint(torch.nn.Linear(2, 2), URL), URL,
             hub.marker)


def test_torchvision_scheme(hub, tiny_arch):
    url = get_torchvision_models()['resnet50']
    hub(url)
    model = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'))
    _refused(model.init_weights, url, hub.marker)


@pytest.mark.parametrize('name, resolve', [
    ('modelzoo://resnet50', lambda: get_torchvision_models()['resnet50']),
    ('open-mmlab://vgg16_caffe', lambda: get_external_models()['vgg16_caffe']),
    ('openmmlab://vgg16_caffe', lambda: get_external_models()['vgg16_caffe']),
    ('mmcls://vgg11', lambda: get_mmcls_models()['vgg11']),
])
def test_schemes_that_resolve_to_a_url(hub, name, resolve):
    url = resolve()
    hub(url)
    _refused(lambda: load_checkpoint(torch.nn.Linear(2, 2), name), url,
             hub.marker)


def test_pretrained_init_from_url(hub, tiny_arch):
    hub(URL)
    model = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        init_cfg=dict(type='Pretrained', checkpoint=URL, prefix='backbone.'))
    _refused(model.init_weights, URL, hub.marker)
    # the one weight loader (init_model, the analysis tools, this init)
    _refused(lambda: load_weights(model, URL, 'backbone.'), URL, hub.marker)


def test_runner_load_from_url(hub, tmp_path, toy_runner):
    hub(URL)
    runner = toy_runner(str(tmp_path / 'work'), False, 1, 1)
    runner.call_hook('before_run')
    runner._load_from = URL
    _refused(runner.load_or_resume, URL, hub.marker)


def test_runner_resume_from_url(hub, tmp_path, toy_runner):
    hub(URL)
    runner = toy_runner(str(tmp_path / 'work'), False, 1, 1, resume_from=URL)
    runner.call_hook('before_run')
    _refused(runner.load_or_resume, URL, hub.marker)


def test_valid_checkpoint_from_url_loads_unchanged(hub, tiny_arch):
    hub(URL, payload=False)
    source = SLaK(arch=tiny_arch, width_factor=1.0)
    source.load_state_dict({
        k[len('backbone.'):]: v
        for k, v in torch.load(
            osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(URL)))
        ['state_dict'].items()
    })
    model = SLaK(
        arch=tiny_arch,
        width_factor=1.0,
        init_cfg=dict(type='Pretrained', checkpoint=URL, prefix='backbone.'))
    model.init_weights()
    for name, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert not hub.marker.exists()
