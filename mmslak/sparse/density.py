"""Initial layer-wise densities: uniform, ERK and SNIP."""
import copy
import math
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import revert_sync_batchnorm

from .validation import check_density


def _numel(shape) -> int:
    return int(math.prod(shape))


def uniform_densities(shapes: Dict[str, tuple],
                      density: float) -> Dict[str, float]:
    """Every layer at ``density``."""
    check_density(density)
    return {name: float(density) for name in shapes}


def erk_densities(shapes: Dict[str, tuple],
                  density: float,
                  power_scale: float = 1.0) -> Dict[str, float]:
    """Erdos-Renyi-Kernel densities for a total ``density``.

    Layer ``l`` gets ``eps * (sum(shape_l) / prod(shape_l)) ** power_scale``
    with ``eps`` chosen so that the weighted mean density is ``density``.
    A layer that would exceed 1 is made dense (the largest first) and
    ``eps`` is solved again over the remaining layers.
    """
    check_density(density)
    numel = {n: _numel(s) for n, s in shapes.items()}
    raw = {n: (sum(s) / numel[n])**power_scale for n, s in shapes.items()}
    total = sum(numel.values())
    dense = set()
    while True:
        budget = density * total - sum(numel[n] for n in dense)
        divisor = sum(raw[n] * numel[n] for n in shapes if n not in dense)
        if divisor <= 0:  # everything is dense
            eps = 0.
            break
        eps = budget / divisor
        over = [n for n in shapes if n not in dense and eps * raw[n] > 1]
        if not over:
            break
        dense.add(max(over, key=lambda n: raw[n]))
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def densities_to_counts(densities: Dict[str, float],
                        shapes: Dict[str, tuple],
                        total: Optional[int] = None) -> Dict[str, int]:
    """Active-weight count per layer whose sum is exactly ``total``.

    Floors of ``density * numel`` plus the largest remainders (Hamilton's
    apportionment), so that the total density is met to one weight.
    ``total`` defaults to ``round(sum(density * numel))``.
    """
    numel = {n: _numel(s) for n, s in shapes.items()}
    exact = {n: densities[n] * numel[n] for n in shapes}
    counts = {n: min(numel[n], int(math.floor(exact[n]))) for n in shapes}
    if total is None:
        total = int(round(sum(exact.values())))
    rest = total - sum(counts.values())
    order = sorted(shapes, key=lambda n: -(exact[n] - counts[n]))
    while rest > 0:
        grew = False
        for n in order:
            if rest == 0:
                break
            if counts[n] < numel[n]:
                counts[n] += 1
                rest -= 1
                grew = True
        if not grew:
            raise ValueError(f'cannot place {total} weights in the layers')
    return counts


def model_loss(model: nn.Module, data_batch) -> torch.Tensor:
    """The training loss of an mmengine ``BaseModel`` on one batch."""
    data = model.data_preprocessor(data_batch, True)
    if isinstance(data, dict):
        losses = model(**data, mode='loss')
    else:
        losses = model(*data, mode='loss')
    loss, _ = model.parse_losses(losses)
    return loss


def snip_loss(model: nn.Module, data_batch) -> torch.Tensor:
    """The reference's SNIP loss: plain cross-entropy of the logits on the
    batch as loaded (no Mixup / CutMix, no label smoothing).

    The batch is preprocessed as for training (an mmseg preprocessor pads
    the crops of a batch to one size only then) without the preprocessor's
    batch augments (``batch_augments``, as OpenMMLab's preprocessors name
    them). A model whose data samples carry no ``gt_label`` (a detector, a
    segmentor) gets its own training loss on that un-augmented batch.
    """
    preprocessor = model.data_preprocessor
    augments = getattr(preprocessor, 'batch_augments', None)
    if augments is not None:
        preprocessor.batch_augments = None
    try:
        data = preprocessor(data_batch, True)
    finally:
        if augments is not None:
            preprocessor.batch_augments = augments
    if not isinstance(data, dict):  # a plain (inputs, labels) model
        return model_loss(model, data_batch)
    samples = data.get('data_samples')
    if samples and all('gt_label' in s for s in samples):
        logits = model(data['inputs'], samples, mode='tensor')
        labels = torch.cat([s.gt_label for s in samples]).to(logits.device)
        return F.cross_entropy(logits, labels)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    return loss


def snip_scores(model: nn.Module,
                names: Iterable[str],
                data_batches: Iterable,
                loss_fn: Callable = snip_loss) -> Dict[str, torch.Tensor]:
    """SNIP saliency ``|w * dL/dw|`` summed over ``data_batches``.

    Computed on a deep copy of ``model`` in train mode, so the model's
    gradients, BN statistics and weights are left untouched. The copy's
    SyncBN layers are plain BN: SNIP runs on one rank, where SyncBN would
    wait for the other ranks' statistics forever.
    ``loss_fn(model, batch)`` returns a scalar loss.
    """
    net = revert_sync_batchnorm(copy.deepcopy(model))
    net.train()
    params = dict(net.named_parameters())
    names = list(names)
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f'parameters not in the model: {missing[:5]}')
    weights = [params[n] for n in names]
    scores = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
    seen = 0
    for batch in data_batches:
        loss = loss_fn(net, batch)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        for s, w, g in zip(scores, weights, grads):
            if g is not None:
                s.add_((w.detach() * g).abs().float())
        seen += 1
    if seen == 0:
        raise ValueError('SNIP needs at least one data batch')
    del net
    return dict(zip(names, scores))


def snip_counts(scores: Dict[str, torch.Tensor],
                density: float) -> Dict[str, int]:
    """Per-layer counts of the global top-``density`` SNIP scores.

    Ties at the threshold go to the earlier layer / position, so the
    result is deterministic.
    """
    check_density(density)
    names = list(scores)
    flat = torch.cat([scores[n].flatten().float().cpu() for n in names])
    k = int(round(density * flat.numel()))
    top = smallest_k_mask(-flat, k)
    per_layer = top.split([scores[n].numel() for n in names])
    return {n: int(t.count_nonzero()) for n, t in zip(names, per_layer)}


def smallest_k_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (shaped like ``values``) of its ``k`` smallest entries.

    Ties at the threshold go to the lower flat index. One selection
    (``kthvalue``) and a comparison: no sort, no index list of all entries.
    ``+inf`` marks entries that must not be selected.
    """
    flat = values.flatten()
    n = flat.numel()
    if not 0 <= k <= n:
        raise ValueError(f'k={k} is out of range for {n} values')
    if k == 0:
        return torch.zeros(
            values.shape, dtype=torch.bool, device=values.device)
    if k == n:
        return torch.ones(values.shape, dtype=torch.bool, device=values.device)
    thr = torch.kthvalue(flat, k).values
    if bool(torch.isposinf(thr)):
        raise ValueError(f'asked for {k} entries but fewer are selectable')
    selected = flat <= thr
    extra = int(selected.count_nonzero()) - k
    if extra > 0:  # ties at thr: keep the lower indices
        selected[(flat == thr).nonzero().squeeze(1)[-extra:]] = False
    return selected.view(values.shape)


def random_mask(shape,
                count: int,
                generator: torch.Generator,
                device=None) -> torch.Tensor:
    """A bool mask of ``shape`` with ``count`` active entries at random.

    The draw uses the CPU ``generator`` so that the same seed gives the
    same mask on any device.
    """
    numel = _numel(shape)
    idx = torch.randperm(numel, generator=generator)[:count]
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[idx] = True
    return mask.view(shape).to(device)
