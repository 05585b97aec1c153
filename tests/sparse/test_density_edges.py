"""mmslak.sparse.density at its edges: density 1, ERK caps and tiny
divisors, Hamilton's largest remainders, ties in the selections, empty /
full selections (their dtype and device), SNIP's bookkeeping. Expected
values are written by hand."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement

from mmslak.sparse.density import (densities_to_counts, erk_densities,
                                   model_loss, random_mask, smallest_k_mask,
                                   snip_counts, snip_loss, snip_scores,
                                   topk_indices, uniform_densities)

META = torch.device('meta')


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


@pytest.mark.parametrize('select', ['topk', 'mask'])
def test_k_range_and_empty_and_full_selections(select):
    """k = 0 and k = n are answered without a selection, in the input's
    device (checked on the meta device), dtype long / bool."""
    values = torch.tensor([3., 1., 2.])
    if select == 'topk':

        def pick(v, k):
            return topk_indices(v, k)

        assert topk_indices(values, 0).tolist() == []
        assert topk_indices(values, 0).dtype == torch.long
        assert topk_indices(values, 3).tolist() == [0, 1, 2]
        for k in (0, 3):
            out = topk_indices(torch.empty(3, device=META), k)
            assert out.device == META and out.shape == (k, )
            assert out.dtype == torch.long
    else:

        def pick(v, k):
            return smallest_k_mask(v, k)

        grid = torch.empty(2, 3, device=META)
        for k in (0, 6):
            out = smallest_k_mask(grid, k)
            assert out.device == META and out.shape == (2, 3)
            assert out.dtype == torch.bool
        assert smallest_k_mask(values, 0).tolist() == [False] * 3
        assert smallest_k_mask(values, 3).tolist() == [True] * 3
    for k in (-1, 4):
        with pytest.raises(ValueError, match=f'k={k} is out of range for 3'):
            pick(values, k)
    assert sorted(
        torch.as_tensor(pick(values, 1)).nonzero().flatten().tolist(
        ) if select == 'mask' else pick(values, 1).tolist()) == [1]


def test_topk_ties_go_to_the_lower_index_and_smallest_by_default():
    values = torch.tensor([1., 1., 1., 0., 2.])
    assert sorted(topk_indices(values, 2).tolist()) == [0, 3]
    assert sorted(topk_indices(values, 3).tolist()) == [0, 1, 3]
    assert sorted(topk_indices(values, 2, largest=True).tolist()) == [0, 4]


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
    """Batch augments (as Mixup / CutMix) only when ``training``."""

    def forward(self, data, training=False):
        data = super().forward(data, training)
        if training:
            data = dict(data, inputs=data['inputs'] + 100.)
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


def test_erk_density_one_when_rounding_pushes_a_layer_over_one():
    # (2, 9): eps * raw = 1.0000000000000002 at density 1, so the layer is
    # made dense and no layer is left to share the budget
    raw = 11 / 18
    assert 18 / (raw * 18) * raw > 1
    assert erk_densities({'w': (2, 9)}, 1.0) == {'w': 1.0}
