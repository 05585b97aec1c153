"""Inference on images with the upstream inferencers (mmpretrain
``ImageClassificationInferencer``, mmseg ``MMSegInferencer``, mmdet
``DetInferencer``) around a model built by :func:`init_model`, so weights
are read weights-only with mmslak's key checks, and deploy-form
checkpoints (``tools/model_converters/reparameterize_model.py``) load
without extra options."""
from typing import Optional, Tuple, Union

import numpy as np
import torch.nn as nn

from ..checkpoint import read_checkpoint
from ..utils import task_family
from .inference import init_model


def is_deploy_checkpoint(checkpoint: dict) -> bool:
    """True for a SLaK checkpoint in deploy form (BN folded, no 5x5)."""
    if (checkpoint.get('meta') or {}).get('deploy'):
        return True
    keys = list(checkpoint.get('state_dict', checkpoint))
    return any(k.endswith('LoRA1.conv.bias')
               for k in keys) and not any('.small_conv.' in k for k in keys)


def init_inference_model(config,
                         checkpoint: Optional[str] = None,
                         device: str = 'cpu',
                         cfg_options: Optional[dict] = None) -> nn.Module:
    """:func:`init_model`, building the deploy form when ``checkpoint`` is
    one."""
    options = dict(cfg_options or {})
    if checkpoint is not None:
        if is_deploy_checkpoint(read_checkpoint(checkpoint)):
            options.setdefault('model.backbone.deploy', True)
    return init_model(config, checkpoint, device, options)


class _Prebuilt:
    """Mixin: an upstream (mmengine) inferencer around a prebuilt model
    instead of the one it would build and load itself."""

    def __init__(self, model: nn.Module, **kwargs) -> None:
        self._prebuilt = model
        super().__init__(model=model.cfg, weights=None, **kwargs)

    def _init_model(self, cfg, weights, device):
        return self._prebuilt


def build_inferencer(config,
                     checkpoint: Optional[str] = None,
                     device: str = 'cpu',
                     cfg_options: Optional[dict] = None):
    """The upstream inferencer of the config's task family."""
    model = init_inference_model(config, checkpoint, device, cfg_options)
    family = task_family(model.cfg)
    if family == 'mmpretrain':
        from mmpretrain.apis import ImageClassificationInferencer
        model._config = model.cfg  # what mmpretrain's get_model sets
        meta = getattr(model, 'dataset_meta', None) or {}
        return ImageClassificationInferencer(
            model,
            pretrained=False,
            device=device,
            classes=meta.get('classes'))
    if family == 'mmseg':
        from mmseg.apis import MMSegInferencer

        # what MMSegInferencer's own loader keeps (its visualiser takes
        # exactly these keys)
        meta = getattr(model, 'dataset_meta', None) or {}
        model.dataset_meta = dict(
            classes=meta.get('classes'), palette=meta.get('palette'))
        cls = type('SLaKSegInferencer', (_Prebuilt, MMSegInferencer), {})
        return cls(model, device=device)
    from mmdet.apis import DetInferencer
    model.dataset_meta.setdefault('palette', 'random')
    cls = type('SLaKDetInferencer', (_Prebuilt, DetInferencer), {})
    return cls(model, device=device, show_progress=False)


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def _classify(inferencer, image):
    import mmcv
    sample = inferencer(image, return_datasamples=True)[0]
    if inferencer.visualizer is None:
        from mmpretrain.visualization import UniversalVisualizer
        inferencer.visualizer = UniversalVisualizer()
    rgb = np.ascontiguousarray(mmcv.imread(image)[..., ::-1])
    vis = inferencer.visualizer.visualize_cls(
        rgb, sample, classes=inferencer.classes, draw_gt=False)
    return sample, vis


def _segment(inferencer, image):
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    # MMSegInferencer returns either data samples or the visualisation:
    # ask for the visualisation and wrap the label map back
    out = inferencer(image, return_vis=True)
    pred = _first(out['predictions'])  # one image: the label map itself
    if isinstance(pred, dict):
        pred = pred['sem_seg']
    labels = torch.from_numpy(np.asarray(pred))
    sample = SegDataSample(pred_sem_seg=PixelData(data=labels[None]))
    return sample, _first(out['visualization'])


def inference_image(inferencer, image: Union[str, np.ndarray],
                    **kwargs) -> Tuple[object, np.ndarray]:
    """Run ``inferencer`` on one image (a path, or a BGR array as mmcv
    reads them); returns (data sample, RGB visualisation). ``kwargs`` go to
    the detector's inferencer (e.g. ``pred_score_thr``)."""
    from mmpretrain.apis import ImageClassificationInferencer
    from mmseg.apis import MMSegInferencer
    if isinstance(inferencer, ImageClassificationInferencer):
        return _classify(inferencer, image)
    if isinstance(inferencer, MMSegInferencer):
        return _segment(inferencer, image)
    out = inferencer(image, return_datasamples=True, return_vis=True, **kwargs)
    return _first(out['predictions']), _first(out['visualization'])
