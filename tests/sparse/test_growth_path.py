"""Which regrowth path ran: growth='gradient' regrows by the captured dense
gradient (RigL's rule), and falls back to random regrowth, with a warning,
only when no gradient exists at an update (a skipped optimizer step)."""
import pytest
import torch

from mmslak.sparse import masks as masks_module


@pytest.fixture
def calls(monkeypatch):
    """Spy on both growth functions as the masks module calls them."""
    record = dict(gradient=[], random=[])
    grow_gradient, grow_random = (masks_module.grow_gradient,
                                  masks_module.grow_random)

    def spy_gradient(mask, grad, num):
        new, grown = grow_gradient(mask, grad, num)
        record['gradient'].append((mask.clone(), grad.clone(), num, grown))
        return new, grown

    def spy_random(mask, num, generator):
        record['random'].append(num)
        return grow_random(mask, num, generator)

    monkeypatch.setattr(masks_module, 'grow_gradient', spy_gradient)
    monkeypatch.setattr(masks_module, 'grow_random', spy_random)
    return record


def _hook(**kw):
    return dict(
        type='SparseTrainingHook',
        density=0.5,
        init='uniform',
        prune_rate=0.5,
        growth='gradient',
        log_per_layer=False,
        **kw)


def _warnings(runner, monkeypatch):
    logged = []
    monkeypatch.setattr(runner.logger, 'warning',
                        lambda msg, *a, **k: logged.append(msg))
    return logged


def test_gradient_growth_uses_the_gradient(tmp_path, monkeypatch, calls,
                                           build_runner, sparse_hook):
    runner = build_runner(tmp_path, _hook(update_interval=2), max_iters=6)
    logged = _warnings(runner, monkeypatch)
    runner.train()
    hook = sparse_hook(runner)
    layers = len(hook.masks)
    # updates after iterations 2 and 4 (none at the last one)
    assert hook.num_updates == 2
    assert calls['random'] == []
    assert len(calls['gradient']) == 2 * layers
    assert not [m for m in logged if 'regrowing at random' in m]
    for mask, grad, num, grown in calls['gradient']:
        # RigL's rule, by hand: the regrown are inactive positions of
        # largest |grad|
        assert int(grown.sum()) == num > 0 and not (grown & mask).any()
        rest = ~mask & ~grown
        if rest.any():
            assert grad[grown].abs().min() >= grad[rest].abs().max()
        if grad.dim() == 2:
            # a dense gradient (Linear): the inactive positions have one
            # too, else the choice among them would be arbitrary (conv
            # kernels larger than the tiny maps have zero-gradient taps)
            assert grad[~mask].abs().sum() > 0


def test_no_gradient_falls_back_to_random_and_says_so(tmp_path, monkeypatch,
                                                      calls, build_runner,
                                                      sparse_hook):
    runner = build_runner(tmp_path, _hook(update_interval=100), max_iters=2)
    runner.train()  # builds the masks, no update
    hook = sparse_hook(runner)
    assert calls['gradient'] == [] and calls['random'] == []
    logged = _warnings(runner, monkeypatch)
    # as after a skipped optimizer step: nothing captured, grads cleared
    hook._grads = {}
    for p in hook.masks.params.values():
        p.grad = None
    hook.update(runner, 1)
    assert calls['gradient'] == []
    assert len(calls['random']) == len(hook.masks)
    assert [m for m in logged if 'regrowing at random' in m] == [
        'SparseTrainingHook: no gradient at this update (skipped step?); '
        'regrowing at random'
    ]
    # one layer's gradient present is not enough: still the random path
    calls['random'].clear()
    first = hook.masks.names()[0]
    hook.masks.params[first].grad = torch.ones_like(hook.masks.params[first])
    hook.update(runner, 1)
    assert calls['gradient'] == [] and len(calls['random']) == len(hook.masks)
