"""mmslak.sparse.density: uniform / ERK densities, Hamilton's counts, the
k-smallest selection, random masks, SNIP scores / counts / loss. Expected
values by hand, the reference's formulas or float64 oracles."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement, PixelData
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.structures import SegDataSample
from torch.testing import assert_close

from mmslak.sparse.density import (densities_to_counts, erk_densities,
                                   model_loss, random_mask, smallest_k_mask,
                                   snip_counts, snip_loss, snip_scores,
                                   uniform_densities)

META = torch.device('meta')


def test_k_range_and_empty_and_full_selections():
    """k = 0 and k = n are answered without a selection, in the input's
    device (checked on the meta device), as bool masks."""
    values = torch.tensor([3., 1., 2.])
    grid = torch.empty(2, 3, device=META)
    for k in (0, 6):
        out = smallest_k_mask(grid, k)
        assert out.device == META and out.shape == (2, 3)
        assert out.dtype == torch.bool
    assert smallest_k_mask(values, 0).tolist() == [False] * 3
    assert smallest_k_mask(values, 3).tolist() == [True] * 3
    assert smallest_k_mask(values, 1).tolist() == [False, True, False]
    for k in (-1, 4):
        with pytest.raises(ValueError, match=f'k={k} is out of range for 3'):
            smallest_k_mask(values, k)


def test_density_one_is_allowed_and_above_one_refused():
    shapes = {'a': (4, 3), 'b': (2, 2)}
    assert uniform_densities(shapes, 1.0) == {'a': 1.0, 'b': 1.0}
    # every ERK layer dense: nothing is left to share a budget
    assert erk_densities(shapes, 1.0) == {'a': 1.0, 'b': 1.0}
    for bad in (1.5, 1.0000001, 0., -0.1):
        with pytest.raises(ValueError, match=f'got {bad}'):
            uniform_densities(shapes, bad)
        with pytest.raises(ValueError, match='density must be in'):
            erk_densities(shapes, bad)


def test_erk_caps_a_layer_just_over_one():
    # eps = 0.15 * 10100 / (20 + 200) = 6.886...; 'a': 0.2 eps = 1.377
    # (over 1: dense); then eps = (1515 - 100) / 200 = 7.075 for 'b'
    dens = erk_densities({'a': (10, 10), 'b': (100, 100)}, 0.15)
    assert dens['a'] == 1.0
    assert dens['b'] == pytest.approx(7.075 * 0.02, rel=1e-12)


def test_erk_with_a_divisor_below_one():
    # power 3: (200 / 10000) ** 3 * 10000 = 0.08 is the whole divisor
    dens = erk_densities({'w': (100, 100)}, 0.5, power_scale=3.)
    assert dens['w'] == pytest.approx(0.5, rel=1e-12)


def test_erk_several_layers_over_one_at_once():
    # 'a' (raw 0.5) and 'c' (raw 0.25) both exceed 1 at first
    shapes = {'b': (1000, 1000), 'c': (8, 8), 'a': (4, 4)}
    dens = erk_densities(shapes, 0.1)
    assert dens['a'] == dens['c'] == 1.0
    eps = (0.1 * (1e6 + 80) - 80) / 2000
    assert dens['b'] == pytest.approx(eps * 2000 / 1e6, rel=1e-12)


def test_counts_go_to_the_largest_remainders():
    # exact counts 2.3, 5.9, 1.5 (total 9.7 -> 10): floors 2, 5, 1, and
    # the two weights left go to the remainders 0.9 ('b') and 0.5 ('c')
    shapes = {'c': (10, ), 'a': (10, ), 'b': (10, )}
    dens = {'c': 0.15, 'a': 0.23, 'b': 0.59}
    assert densities_to_counts(dens, shapes) == {'c': 2, 'a': 2, 'b': 6}


def test_counts_never_exceed_a_layer():
    shapes = {'a': (3, ), 'b': (4, )}
    counts = densities_to_counts({'a': 1.0, 'b': 0.5}, shapes, total=6)
    assert counts == {'a': 3, 'b': 3}
    with pytest.raises(ValueError, match='cannot place 8 weights'):
        densities_to_counts({'a': 1.0, 'b': 1.0}, shapes, total=8)


def test_smallest_k_mask_ties_and_unselectable_entries():
    values = torch.tensor([2., 1., 1., 1., 0.])
    # threshold 1, ties at 1, 2, 3: one too many, the highest index goes
    assert smallest_k_mask(values,
                           3).tolist() == [False, True, True, False, True]
    assert smallest_k_mask(torch.tensor([1., 0., 1.]),
                           2).tolist() == [True, True, False]
    assert smallest_k_mask(values,
                           2).tolist() == [False, True, False, False, True]
    with pytest.raises(ValueError, match='asked for 2 entries but fewer'):
        smallest_k_mask(torch.tensor([1., math.inf, math.inf]), 2)


def test_random_mask_uses_the_given_generator_and_device():
    torch.manual_seed(0)
    mask = random_mask((10, 10), 30, torch.Generator().manual_seed(3))
    want = torch.zeros(100, dtype=torch.bool)
    want[torch.randperm(
        100, generator=torch.Generator().manual_seed(3))[:30]] = True
    assert torch.equal(mask.flatten(), want)
    assert random_mask((4, ), 2, torch.Generator(), META).device == META


# ----------------------------------------------------------------------
# SNIP
class _Net(nn.Module):

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.body = nn.Linear(3, 2).to(dtype)
        self.unused = nn.Parameter(torch.ones(2, 2, dtype=dtype))
        self.modes = []


def _loss(net, batch):
    net.modes.append(net.body.training)
    return (net.body(batch)**2).sum()


def test_snip_scores_on_a_train_mode_copy_float32_and_unused_weights():
    torch.manual_seed(0)
    model = _Net(torch.float64).eval()
    batch = torch.randn(4, 3, dtype=torch.float64)
    scores = snip_scores(model, ['body.weight', 'unused'], [batch], _loss)
    # the copy was trained, the model itself stays in eval mode
    assert model.body.training is False and model.modes == []
    assert scores['body.weight'].dtype == torch.float32
    assert torch.equal(scores['unused'], torch.zeros(2, 2))
    # |w * dL/dw| by hand: L = sum((x W^T + b)^2), dL/dW = 2 (xW^T+b)^T x
    w, b = model.body.weight.detach(), model.body.bias.detach()
    grad = 2 * (batch @ w.T + b).T @ batch
    assert torch.allclose(
        scores['body.weight'].double(), (w * grad).abs(), rtol=1e-6)


def test_snip_scores_errors_name_the_problem():
    model = _Net()
    names = [f'missing{i}' for i in range(7)]
    with pytest.raises(KeyError) as info:
        snip_scores(model, ['body.weight'] + names, [torch.ones(1, 3)], _loss)
    message = str(info.value)
    assert 'parameters not in the model' in message
    assert all(n in message for n in names[:5]) and 'missing5' not in message
    with pytest.raises(
            ValueError, match='^SNIP needs at least one data batch'):
        snip_scores(model, ['body.weight'], [], _loss)


def test_snip_counts_at_layer_boundaries():
    # the top score is the first entry of 'b' (flat index 3 = the bound)
    scores = {'a': torch.tensor([1., 2., 3.]), 'b': torch.tensor([9., 0.])}
    assert snip_counts(scores, 0.2) == {'a': 0, 'b': 1}  # k = 1
    # the top scores all in 'a': 'b' still listed, with 0
    scores = {'a': torch.tensor([5., 6., 7.]), 'b': torch.tensor([0., 1.])}
    assert snip_counts(scores, 0.6) == {'a': 3, 'b': 0}  # k = 3


class _Detector(BaseModel):
    """Data samples without ``gt_label``: SNIP takes the model's loss."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.]))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        assert mode == 'loss'
        return dict(loss=(self.w * inputs).sum(), acc=torch.tensor(5.))


def test_snip_loss_without_labels_is_the_model_loss():
    model = _Detector()
    sample = BaseDataElement(boxes=torch.zeros(1, 4))
    batch = dict(inputs=torch.tensor([1., 3.]), data_samples=[sample])
    assert float(snip_loss(model, batch)) == 8.  # acc is no loss
    assert float(model_loss(model, batch)) == 8.


class _TupleModel(BaseModel):
    """A preprocessor that returns a tuple: the model is called with it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([3.]))

    def forward(self, x, y, mode='tensor'):
        assert mode == 'loss'
        return dict(loss=(self.w * x - y).sum())


def test_model_loss_of_a_tuple_batch():
    model = _TupleModel()
    batch = (torch.tensor([1., 2.]), torch.tensor([1., 1.]))
    assert float(model_loss(model, batch)) == 7.  # 3 + 6 - 2
    assert float(snip_loss(model, batch)) == 7.


class _Augmenting(BaseDataPreprocessor):
    """Batch augments (as Mixup / CutMix) in ``batch_augments``, applied
    only when ``training``, as OpenMMLab's preprocessors do."""

    def __init__(self):
        super().__init__()
        self.batch_augments = lambda inputs: inputs + 100.

    def forward(self, data, training=False):
        data = super().forward(data, training)
        if training and self.batch_augments is not None:
            data = dict(data, inputs=self.batch_augments(data['inputs']))
        return data


class _Classifier(BaseModel):
    """Samples with ``gt_label``: the logits of ``mode='tensor'``; its
    training loss (``mode='loss'``) is another value (doubled)."""

    def __init__(self):
        super().__init__(data_preprocessor=_Augmenting())
        self.w = nn.Parameter(torch.tensor([[1., -1.], [0.5, 2.]]))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        assert data_samples is not None
        logits = inputs @ self.w
        if mode == 'tensor':
            return logits
        labels = torch.cat([s.gt_label for s in data_samples])
        return dict(loss=2 * nn.functional.cross_entropy(logits, labels))


def _hand_cross_entropy(z, labels):
    z = z.double()
    return float(
        (torch.logsumexp(z, 1) - z[range(len(labels)), labels]).mean())


def test_snip_loss_is_cross_entropy_of_the_unaugmented_logits():
    model = _Classifier()
    x = torch.tensor([[1., 2.], [3., -1.]])
    samples = [BaseDataElement(gt_label=torch.tensor([i])) for i in (1, 0)]
    batch = dict(inputs=x, data_samples=samples)
    want = _hand_cross_entropy(x @ model.w.detach(), [1, 0])
    assert float(snip_loss(model, batch)) == pytest.approx(want, rel=1e-6)
    # the training loss sees the augmented batch and doubles
    augmented = _hand_cross_entropy((x + 100.) @ model.w.detach(), [1, 0])
    assert float(model_loss(model, batch)) == pytest.approx(
        2 * augmented, rel=1e-6)
    # on the meta device the labels follow the logits there
    meta = _Classifier().to('meta')
    assert snip_loss(meta, batch).device == META


class _AugmentedDetector(_Detector):

    def __init__(self):
        super().__init__()
        self.data_preprocessor = _Augmenting()


def test_snip_loss_without_labels_skips_the_batch_augments():
    model = _AugmentedDetector()
    batch = dict(
        inputs=torch.tensor([1., 3.]),
        data_samples=[BaseDataElement(boxes=torch.zeros(1, 4))])
    assert float(snip_loss(model, batch)) == 8.  # 2 * (1 + 3)
    assert float(model_loss(model, batch)) == 408.  # 2 * (101 + 103)


class _Segmentor(BaseModel):
    """mmseg's preprocessor, which pads the crops of a batch to one size
    (8 x 8) in training only (its test path refuses mixed sizes)."""

    def __init__(self):
        super().__init__(data_preprocessor=SegDataPreProcessor(size=(8, 8)))
        self.w = nn.Parameter(torch.tensor(2.))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        assert mode == 'loss' and inputs.shape == (2, 3, 8, 8)
        return dict(loss=self.w * inputs.sum())


def test_snip_loss_pads_crops_of_two_sizes_as_training_does():
    """A random crop smaller than the crop size stays smaller until the
    training preprocessor pads it (a real ADE20K batch)."""
    sizes = [(6, 8), (8, 5)]
    samples = [
        SegDataSample(
            gt_sem_seg=PixelData(data=torch.zeros(1, h, w, dtype=torch.long)))
        for h, w in sizes
    ]
    batch = dict(
        inputs=[torch.ones(3, h, w, dtype=torch.uint8) for h, w in sizes],
        data_samples=samples)
    # 2 * the ones of both crops (the padding is 0)
    assert float(snip_loss(_Segmentor(), batch)) == 2. * 3 * (6 * 8 + 8 * 5)


def test_erk_density_one_when_rounding_pushes_a_layer_over_one():
    # (2, 9): eps * raw = 1.0000000000000002 at density 1, so the layer is
    # made dense and no layer is left to share the budget
    raw = 11 / 18
    assert 18 / (raw * 18) * raw > 1
    assert erk_densities({'w': (2, 9)}, 1.0) == {'w': 1.0}


def test_uniform_and_counts_exact_total():
    shapes = {'a': (10, 3), 'b': (7, 1, 3, 3), 'c': (5, )}
    dens = uniform_densities(shapes, 0.37)
    assert set(dens.values()) == {0.37}
    counts = densities_to_counts(dens, shapes)
    numel = {'a': 30, 'b': 63, 'c': 5}
    assert sum(counts.values()) == round(0.37 * 98)
    for n in shapes:  # each layer within one weight of its density
        assert abs(counts[n] - 0.37 * numel[n]) < 1
    assert sum(densities_to_counts(dens, shapes, total=40).values()) == 40
    with pytest.raises(ValueError, match='density'):
        uniform_densities(shapes, 0.)


def test_erk_matches_formula():
    shapes = {
        'conv': (64, 32, 3, 3),
        'dw': (64, 1, 31, 5),
        'fc': (128, 64),
        'head': (100, 128)
    }
    density = 0.2
    dens = erk_densities(shapes, density)
    # independent: eps * (sum/prod) with eps from the total budget
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    eps = density * sum(numel.values()) / sum(raw[n] * numel[n]
                                              for n in shapes)
    assert all(eps * raw[n] <= 1 for n in shapes)
    for n in shapes:
        assert dens[n] == pytest.approx(eps * raw[n], rel=1e-12)
    total = sum(dens[n] * numel[n] for n in shapes)
    assert total == pytest.approx(density * sum(numel.values()))
    # power scale
    d2 = erk_densities(shapes, density, power_scale=0.5)
    eps2 = density * sum(numel.values()) / sum(raw[n]**0.5 * numel[n]
                                               for n in shapes)
    assert d2['fc'] == pytest.approx(eps2 * raw['fc']**0.5)


def test_erk_caps_and_redistributes():
    # the depthwise kernel's raw score is huge: it must be capped at 1
    shapes = {'big': (256, 256), 'dw': (4, 1, 3, 3), 'mid': (64, 64)}
    density = 0.2
    dens = erk_densities(shapes, density)
    assert dens['dw'] == 1.0
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    budget = density * sum(numel.values()) - numel['dw']
    eps = budget / (raw['big'] * numel['big'] + raw['mid'] * numel['mid'])
    assert dens['big'] == pytest.approx(eps * raw['big'])
    assert dens['mid'] == pytest.approx(eps * raw['mid'])
    total = sum(dens[n] * numel[n] for n in shapes)
    assert total == pytest.approx(density * sum(numel.values()))


class _Crafted(nn.Module):

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(6, 5))
        self.b = nn.Parameter(torch.randn(3, 2, 2, 2))
        self.bias = nn.Parameter(torch.randn(4))


def test_snip_picks_global_top_scores():
    model = _Crafted()
    coef_a = torch.randn(6, 5)
    coef_b = torch.randn(3, 2, 2, 2) * 3

    def loss_fn(net, batch):  # dL/da = coef_a * batch, dL/db = coef_b
        return (net.a * coef_a * batch).sum() + (net.b * coef_b).sum()

    scores = snip_scores(model, ['a', 'b'], [1.0, 2.0], loss_fn)
    # the model itself is untouched (scores come from a copy)
    assert model.a.grad is None
    assert_close(scores['a'], (model.a * coef_a).abs() * 3)
    assert_close(scores['b'], (model.b * coef_b).abs() * 2)
    density = 0.45
    counts = snip_counts(scores, density)
    flat = torch.cat([scores['a'].flatten(), scores['b'].flatten()])
    k = round(density * flat.numel())
    top = torch.sort(flat, descending=True, stable=True).indices[:k]
    assert counts == {'a': int((top < 30).sum()), 'b': int((top >= 30).sum())}
    assert sum(counts.values()) == k
    with pytest.raises(ValueError, match='batch'):
        snip_scores(model, ['a'], [], loss_fn)


def test_random_mask_count():
    m = random_mask((5, 1, 7, 3), 42, torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and int(m.sum()) == 42


def tiny_classifier():
    """An mmpretrain classifier with the paper's training losses: label
    smoothing 0.1 and Mixup / CutMix batch augments."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cls_cfg())


def cls_cfg():
    return dict(
        type='ImageClassifier',
        data_preprocessor=dict(num_classes=4, mean=[0.] * 3, std=[1.] * 3),
        backbone=dict(
            type='SLaK',
            arch=dict(depths=[1, 1, 1, 1], dims=[8, 8, 8, 8]),
            width_factor=1.0,
            kernel_sizes=(7, 7, 5, 5),
            small_kernel=3),
        head=dict(
            type='LinearClsHead',
            num_classes=4,
            in_channels=8,
            loss=dict(
                type='LabelSmoothLoss', label_smooth_val=0.1,
                mode='original')),
        train_cfg=dict(augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0)
        ]))


def test_snip_loss_is_plain_cross_entropy_on_the_raw_batch():
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    model = tiny_classifier().eval()  # no dropout / BN updates in the check
    images = torch.rand(6, 3, 32, 32) * 255
    labels = [0, 1, 2, 3, 0, 1]
    batch = dict(
        inputs=list(images),
        data_samples=[DataSample().set_gt_label(y) for y in labels])
    # oracle: float64 copy of the network on the un-augmented images, then
    # cross-entropy written out: mean of logsumexp(z) - z_y
    net = model.double()
    with torch.no_grad():
        z = net.head(net.backbone(images.double()))
    want = (torch.logsumexp(z, 1) - z[range(6), labels]).mean()
    model.float()
    got = snip_loss(model, batch)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    # the training loss (label smoothing, Mixup / CutMix) is another value
    torch.manual_seed(0)
    assert abs(float(model_loss(model, batch)) - float(want)) > 1e-3
    assert got.requires_grad


def test_snip_loss_of_a_plain_model_is_its_loss(tiny_slak_classifier,
                                                random_images):
    torch.manual_seed(0)
    model = tiny_slak_classifier().eval()
    items = [random_images()[i] for i in range(4)]
    batch = dict(
        inputs=torch.stack([x['inputs'] for x in items]),
        labels=torch.tensor([x['labels'] for x in items]))
    want = F.cross_entropy(model(batch['inputs']), batch['labels'])
    assert float(snip_loss(model, batch)) == pytest.approx(float(want))
