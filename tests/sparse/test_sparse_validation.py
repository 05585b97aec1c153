"""SparseTrainingHook refuses what would train something else than asked:
masks matching no weight, a density that empties layers, a non-numeric
density, an invalid ``exclude`` regex; each error names the parameter."""
import pytest
import torch

from mmslak.engine.hooks import SparseTrainingHook


def _hook(**kw):
    cfg = dict(type='SparseTrainingHook', log_per_layer=False)
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize('density', ['0.5', None, [0.5], True])
def test_non_numeric_density(density):
    with pytest.raises(TypeError) as err:
        SparseTrainingHook(density=density)
    assert 'density must be a number in (0, 1]' in str(err.value)
    assert repr(density) in str(err.value)


@pytest.mark.parametrize('density', [0, -0.1, 1.5])
def test_density_out_of_range(density):
    with pytest.raises(ValueError, match=r'density must be in \(0, 1\]'):
        SparseTrainingHook(density=density)


@pytest.mark.parametrize('exclude', ['head(', ['^backbone', '[a-'], '*x'])
def test_invalid_exclude_regex(exclude):
    bad = exclude if isinstance(exclude, str) else exclude[1]
    with pytest.raises(ValueError) as err:
        SparseTrainingHook(exclude=exclude)
    assert f'exclude pattern {bad!r} is not a valid regular expression' in \
        str(err.value)


def test_valid_exclude_accepted():
    hook = SparseTrainingHook(exclude=r'^(?!backbone\.)')
    assert hook.exclude == [r'^(?!backbone\.)']


@pytest.mark.parametrize('init', ['uniform', 'erk'])
def test_density_leaving_empty_layers(tmp_path, init, build_runner,
                                      tiny_slak_classifier):
    runner = build_runner(tmp_path, _hook(density=1e-4, init=init))
    with pytest.raises(ValueError) as err:
        runner.train()
    msg = str(err.value)
    assert 'density=0.0001 leaves' in msg and 'with no active weight' in msg
    # the smallest layer, counted independently of the hook
    model = tiny_slak_classifier()
    smallest = min(p.numel() for p in model.parameters() if p.dim() in (2, 4))
    assert f'the smallest layer has {smallest} weights' in msg


def test_density_too_small_for_snip(tmp_path, build_runner):
    runner = build_runner(tmp_path, _hook(density=1e-4, init='snip'))
    with pytest.raises(ValueError, match='density=0.0001 leaves'):
        runner.train()


def test_density_keeping_every_layer_trains(tmp_path, build_runner,
                                            sparse_hook):
    runner = build_runner(tmp_path,
                          _hook(density=0.3, init='uniform', dynamic=False))
    runner.train()
    assert all(c > 0 for c in sparse_hook(runner).masks.counts().values())


def test_mask_checkpoint_matching_no_weight(tmp_path, build_runner,
                                            sparse_hook, tiny_slak_classifier):
    model = tiny_slak_classifier()
    # masks named as a reference checkpoint (no 'backbone.' prefix)
    ref = {
        'model': {
            k[len('backbone.'):]: v * (torch.rand(v.shape) > 0.5)
            for k, v in model.state_dict().items()
            if k.startswith('backbone.') and v.is_floating_point()
        }
    }
    path = str(tmp_path / 'ref.pth')
    torch.save(ref, path)
    runner = build_runner(
        tmp_path / 'a',
        _hook(init='checkpoint', dynamic=False, mask_checkpoint=path))
    with pytest.raises(ValueError) as err:
        runner.train()
    msg = str(err.value)
    assert f'masks from {path} matches a weight' in msg
    assert 'mask_prefix_map' in msg
    # with the prefix map the same file is used (both directions)
    runner = build_runner(
        tmp_path / 'b',
        _hook(
            init='checkpoint',
            dynamic=False,
            mask_checkpoint=path,
            mask_prefix_map={'': 'backbone.'}))
    runner.train()
    assert len(sparse_hook(runner).masks) > 0
