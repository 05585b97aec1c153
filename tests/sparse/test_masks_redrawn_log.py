"""``load_from`` a sparse checkpoint with an init other than 'checkpoint':
the hook says the masks are redrawn and why; with 'checkpoint' it does
not."""
import pytest

import mmslak  # noqa: F401
from mmslak.sparse import masks_from_checkpoint

HOOK = dict(type='SparseTrainingHook', density=0.6, update_interval=2)


@pytest.fixture(scope='module')
def sparse_ckpt(tmp_path_factory, build_runner):
    work = tmp_path_factory.mktemp('src')
    build_runner(
        work, dict(HOOK, init='erk'), max_iters=2, ckpt_interval=2).train()
    return str(work / 'iter_2.pth')


def test_load_from_with_other_init_says_masks_are_redrawn(
        tmp_path, sparse_ckpt, build_runner, train_logged):
    runner = build_runner(
        tmp_path,
        dict(HOOK, init='uniform'),
        max_iters=1,
        load_from=sparse_ckpt)
    text = train_logged(runner)
    assert "carries masks, but init='uniform' draws new ones" in text
    assert "set init='checkpoint' to keep its masks" in text


def test_load_from_with_checkpoint_init_keeps_masks(tmp_path, sparse_ckpt,
                                                    build_runner, sparse_hook,
                                                    train_logged):
    runner = build_runner(
        tmp_path,
        dict(HOOK, init='checkpoint', dynamic=False),
        max_iters=1,
        load_from=sparse_ckpt)
    text = train_logged(runner)
    assert 'draws new ones' not in text
    hook = sparse_hook(runner)
    saved = masks_from_checkpoint(sparse_ckpt)
    assert set(saved) == set(hook.masks.names())
    for name, mask in saved.items():
        assert (hook.masks.mask(name).cpu() == mask).all(), name
