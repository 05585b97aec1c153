"""Weights-only loading for every remote checkpoint scheme mmengine knows.

mmengine 0.10.7 reads ``http(s)://`` checkpoints (and the schemes that
resolve to a URL: ``torchvision://``, ``modelzoo://``, ``open-mmlab://``,
``openmmlab://``, ``mmcls://``) through ``torch.hub.load_state_dict_from_url``
whose ``weights_only`` defaults to ``False``: a file served at the URL, or
already in the hub cache, runs its pickled payload. ``pavi://`` and
``s3://`` / ``petrel://`` call ``torch.load`` without ``weights_only``, which
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` can switch off.

Registering these loaders over mmengine's is the one place where mmslak
replaces an upstream behaviour: they download exactly as mmengine does (same
cache, same file names, rank 0 first) and then read the file through
:func:`~mmslak.checkpoint.load_checkpoint_file` (``weights_only=True`` and the
allow-list), so what mmengine would have loaded safely loads unchanged, and
nothing else is unpickled. Local paths keep mmengine's loader: torch's own
default there is weights-only.
"""
import io
import os
import os.path as osp
import tempfile
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.runner import checkpoint as mme_ckpt

from .loading import CheckpointError, load_checkpoint_file

__all__ = ['REMOTE_PREFIXES', 'load_from_url', 'register_remote_loaders']


def _hub_cache_path(url: str) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` caches ``url``."""
    model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(model_dir, osp.basename(urlparse(url).path))


def _download(url: str) -> str:
    cached = _hub_cache_path(url)
    if not osp.exists(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        torch.hub.download_url_to_file(url, cached, progress=False)
    return cached


def _read(path_or_buffer, source: str, map_location) -> dict:
    """Weights-only read whose errors name ``source`` (the URL)."""
    return load_checkpoint_file(
        path_or_buffer, map_location=map_location, display_name=source)


def load_from_url(url: str, map_location=None) -> dict:
    """Download ``url`` into torch's hub cache (rank 0 first, as mmengine
    does) and read it weights-only. Errors name the URL and the cache
    file."""
    rank, world_size = get_dist_info()
    if rank == 0:
        cached = _download(url)
    if world_size > 1:
        barrier()
        if rank > 0:
            cached = _download(url)
    return _read(cached, f'{url} (cached at {cached})', map_location)


def load_from_torchvision(filename: str, map_location=None) -> dict:
    name = filename.split('://', 1)[1]
    urls = mme_ckpt.get_torchvision_models()
    if name not in urls:
        raise CheckpointError(
            f'{filename!r}: torchvision has no model named {name!r}')
    return load_from_url(urls[name], map_location)


def load_from_openmmlab(filename: str, map_location=None) -> dict:
    name = filename.split('://', 1)[1]
    name = mme_ckpt.get_deprecated_model_names().get(name, name)
    urls = mme_ckpt.get_external_models()
    if name not in urls:
        raise CheckpointError(
            f'{filename!r}: OpenMMLab lists no model named {name!r}')
    if urls[name].startswith(('http://', 'https://')):
        return load_from_url(urls[name], map_location)
    local = osp.join(mme_ckpt._get_mmengine_home(), urls[name])
    return load_checkpoint_file(local, map_location=map_location)


def load_from_mmcls(filename: str, map_location=None) -> dict:
    name = filename[len('mmcls://'):]
    urls = mme_ckpt.get_mmcls_models()
    if name not in urls:
        raise CheckpointError(
            f'{filename!r}: mmcls lists no model named {name!r}')
    return mme_ckpt._process_mmcls_checkpoint(
        load_from_url(urls[name], map_location))


def load_from_pavi(filename: str, map_location=None) -> dict:
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError(
            f'{filename!r}: install pavi to load checkpoints from pavi://'
        ) from None
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return _read(downloaded, filename, map_location)


def load_from_ceph(filename: str, map_location=None, backend='petrel'):
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return _read(buffer, filename, map_location)


REMOTE_PREFIXES = {
    ('http://', 'https://'): load_from_url,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    'mmcls://': load_from_mmcls,
    'pavi://': load_from_pavi,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
}


def register_remote_loaders() -> None:
    """Register the weights-only loaders for every remote scheme
    (idempotent)."""
    for prefixes, loader in REMOTE_PREFIXES.items():
        mme_ckpt.CheckpointLoader.register_scheme(
            prefixes=prefixes, loader=loader, force=True)
