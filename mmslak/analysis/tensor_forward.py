"""The plain tensor forward of a full model (no post-processing), which
the counters and timers of the analysis tools run."""
from functools import partial
from typing import Any, Dict, Tuple, Union

import torch
import torch.nn as nn

from ..utils import task_family


def dummy_inputs(
    model: nn.Module,
    shape: Tuple[int, int],
    batch_size: int = 1,
    device: Union[str, torch.device] = 'cpu'
) -> Tuple[torch.Tensor, Dict[str, Any]]:
    """Random (N, 3, H, W) inputs and the keyword arguments that make
    ``model(inputs, **kwargs)`` run its plain tensor forward (no
    post-processing), for any of the supported tasks."""
    h, w = shape
    inputs = torch.rand(batch_size, 3, h, w, device=device)
    family = task_family(model)
    if family is None:  # a bare backbone
        return inputs, {}
    meta = dict(
        img_shape=(h, w),
        ori_shape=(h, w),
        pad_shape=(h, w),
        batch_input_shape=(h, w),
        scale_factor=(1., 1.))
    if family == 'mmseg':
        from mmseg.structures import SegDataSample
        samples = [SegDataSample(metainfo=meta) for _ in range(batch_size)]
    elif family == 'mmdet':
        from mmdet.structures import DetDataSample
        samples = [DetDataSample(metainfo=meta) for _ in range(batch_size)]
    else:
        samples = None
    return inputs, dict(data_samples=samples, mode='tensor')


class TensorForward:
    """Context manager making ``model.forward(x)`` the tensor forward.

    Tracers (mmengine's FlopAnalyzer) call ``model(x)``; this binds the data
    samples and ``mode='tensor'`` for the duration, keeping module names
    unchanged (so they match checkpoint and mask names).
    """

    def __init__(self, model: nn.Module, kwargs: Dict[str, Any]) -> None:
        self.model = model
        self.kwargs = kwargs

    def __enter__(self) -> nn.Module:
        if self.kwargs:
            self.model.forward = partial(
                type(self.model).forward, self.model, **self.kwargs)
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.__dict__.pop('forward', None)
