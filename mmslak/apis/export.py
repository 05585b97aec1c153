"""ONNX export of SLaK classifiers, UperNet segmentors and the backbone +
neck of detectors, in deploy form (BN folded, 5x5 merged into the strips).

The exported graph takes the *normalised* image batch (N, 3, H, W), as
mmdeploy's graphs do: mean/std normalisation and resizing stay in the
caller's pre-processing (``model.data_preprocessor``). Outputs:

* classification: ``logits`` (N, num_classes), before softmax;
* segmentation: ``seg_logits`` (N, num_classes, H, W), the decode head's
  logits resized to the input (mmseg's whole-image inference);
* detection: ``feat0`` ... ``featK``, the neck's (FPN's) feature maps.
"""
import contextlib
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import dispatch
from ..utils import task_family


class _ClassifierGraph(nn.Module):

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')


class _SegmentorGraph(nn.Module):

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.model.decode_head
        logits = head(self.model.extract_feat(x))
        return F.interpolate(
            logits,
            size=x.shape[2:],
            mode='bilinear',
            align_corners=head.align_corners)


class _FeatureGraph(nn.Module):

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.model.extract_feat(x))


_GRAPHS = dict(
    mmpretrain=_ClassifierGraph, mmseg=_SegmentorGraph, mmdet=_FeatureGraph)


class _MatmulAdaptivePool(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products with constant bin
    matrices (PyTorch's bins: rows floor(i*n/o) .. ceil((i+1)*n/o)).

    Ours because torch's ONNX exporter only takes output sizes that divide
    the input (UperNet's 1/2/3/6 pyramid on a 16x16 map does not).
    """

    def __init__(self, output_size) -> None:
        super().__init__()
        size = output_size
        self.output_size = (size, size) if isinstance(size, int) else size

    @staticmethod
    def _bins(n: int, o: int, like: torch.Tensor) -> torch.Tensor:
        mat = torch.zeros(o, n, dtype=like.dtype, device=like.device)
        for i in range(o):
            start, end = (i * n) // o, -((-(i + 1) * n) // o)
            mat[i, start:end] = 1. / (end - start)
        return mat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = (int(s) for s in x.shape[-2:])
        oh, ow = (s if s is not None else d
                  for s, d in zip(self.output_size, (h, w)))
        rows, cols = self._bins(h, oh, x), self._bins(w, ow, x)
        return rows @ x @ cols.t()


@contextlib.contextmanager
def exportable_pooling(module: nn.Module):
    """Swap every ``nn.AdaptiveAvgPool2d`` of ``module`` for
    :class:`_MatmulAdaptivePool` for the duration (restored after)."""
    swapped = []
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.AdaptiveAvgPool2d):
            parent_name, _, attr = name.rpartition('.')
            parent = module.get_submodule(parent_name)
            setattr(parent, attr, _MatmulAdaptivePool(child.output_size))
            swapped.append((parent, attr, child))
    try:
        yield len(swapped)
    finally:
        for parent, attr, child in swapped:
            setattr(parent, attr, child)


def export_graph(model: nn.Module) -> nn.Module:
    """The module whose ``forward(x)`` is exported, for ``model``'s task."""
    task = task_family(model)
    if task not in _GRAPHS:
        raise ValueError(
            f'cannot export a {type(model).__name__} (task family {task}): '
            'expected an '
            'mmpretrain classifier, an mmseg segmentor or an mmdet detector')
    return _GRAPHS[task](model).eval()


def output_names(graph: nn.Module, x: torch.Tensor) -> List[str]:
    if isinstance(graph, _ClassifierGraph):
        return ['logits']
    if isinstance(graph, _SegmentorGraph):
        return ['seg_logits']
    with torch.no_grad():
        return [f'feat{i}' for i in range(len(graph(x)))]


def export_onnx(graph: nn.Module,
                x: torch.Tensor,
                out: str,
                dynamic: bool = False,
                opset: int = 17) -> List[str]:
    """Export ``graph`` (from :func:`export_graph`) at the shape of ``x``.

    ``dynamic`` makes batch, height and width symbolic (segmentors: the
    batch only). Returns the output names.
    """
    names = output_names(graph, x)
    axes = None
    if dynamic:
        spatial = {0: 'batch', 2: 'height', 3: 'width'}
        if isinstance(graph, _SegmentorGraph):
            # UperNet's pyramid pooling (adaptive average pooling) needs a
            # static map size in ONNX: only the batch is dynamic
            spatial = {0: 'batch'}
        axes = {'input': spatial}
        for name in names:
            axes[name] = {0: 'batch'} if name == 'logits' else spatial
    # 'reference' dispatch: every large kernel runs as plain F.conv2d, so it
    # exports as an ONNX Conv. The default plans crop kernels to the map size
    # (a trace-time constant that would break --dynamic) and run through an
    # autograd.Function the exporter would have to inline.
    with torch.no_grad(), dispatch('reference'), exportable_pooling(graph):
        torch.onnx.export(
            graph, (x, ),
            out,
            dynamo=False,
            opset_version=opset,
            input_names=['input'],
            output_names=names,
            dynamic_axes=axes)
    return names


def _as_list(y) -> List[torch.Tensor]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def onnx_session(path: str):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError('verifying an ONNX file needs onnxruntime: '
                          'pip install onnxruntime') from e
    return ort.InferenceSession(path, providers=['CPUExecutionProvider'])


def onnx_errors(graph: nn.Module, session,
                x: torch.Tensor) -> Dict[str, Tuple[float, float]]:
    """Per output: (max |onnxruntime - PyTorch|, that over max |PyTorch|)
    on ``x``."""
    with torch.no_grad():
        expected = _as_list(graph(x))
    got = session.run(None, {'input': x.cpu().numpy()})
    names = [o.name for o in session.get_outputs()]
    errors = {}
    for name, ref, val in zip(names, expected, got):
        ref = ref.detach().cpu().double().numpy()
        if ref.shape != val.shape:
            raise AssertionError(f'{name}: onnxruntime shape {val.shape} != '
                                 f'PyTorch shape {ref.shape}')
        scale = max(np.abs(ref).max(), np.finfo(np.float32).tiny)
        worst = float(np.abs(val - ref).max())
        errors[name] = (worst, worst / scale)
    return errors


def time_both(graph: nn.Module,
              session,
              x: torch.Tensor,
              repeats: int = 5) -> Tuple[float, float]:
    """Median seconds per forward of eager PyTorch (default dispatch) and
    of onnxruntime, timed round-robin in one run."""
    feed = {'input': x.cpu().numpy()}
    eager, onnx = [], []
    with torch.no_grad():
        graph(x)
        session.run(None, feed)  # warm-up both
        for _ in range(repeats):
            start = time.perf_counter()
            graph(x)
            eager.append(time.perf_counter() - start)
            start = time.perf_counter()
            session.run(None, feed)
            onnx.append(time.perf_counter() - start)
    return float(np.median(eager)), float(np.median(onnx))


def preprocess_image(model: nn.Module, image: np.ndarray,
                     shape: Optional[Sequence[int]]) -> torch.Tensor:
    """A (1, 3, H, W) normalised batch of an RGB uint8 ``image`` (resized to
    ``shape`` if given) through the model's own data preprocessor."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if shape is not None:
        img = F.interpolate(
            img[None].float(),
            size=tuple(shape),
            mode='bilinear',
            align_corners=False)[0]
    # the config's preprocessors expect BGR files and convert with
    # bgr_to_rgb=True: hand them BGR
    img = img.flip(0).float()
    data = model.data_preprocessor(dict(inputs=[img]), False)
    return data['inputs'].contiguous()
