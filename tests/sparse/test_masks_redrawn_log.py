"""``load_from`` a sparse checkpoint with an init other than 'checkpoint':
the hook says the masks are redrawn and why; with 'checkpoint' it does
not."""
import pytest
from tiny_setup import build_runner

import mmslak  # noqa: F401
from mmslak.sparse import masks_from_checkpoint

HOOK = dict(type='SparseTrainingHook', density=0.6, update_interval=2)


@pytest.fixture(scope='module')
def sparse_ckpt(tmp_path_factory):
    work = tmp_path_factory.mktemp('src')
    build_runner(
        work, dict(HOOK, init='erk'), max_iters=2, ckpt_interval=2).train()
    return str(work / 'iter_2.pth')


def _train_logged(work, hook, ckpt, caplog):
    runner = build_runner(work, hook, max_iters=1, load_from=ckpt)
    runner.logger.addHandler(caplog.handler)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(caplog.handler)
    return runner, caplog.text


def test_load_from_with_other_init_says_masks_are_redrawn(
        tmp_path, caplog, sparse_ckpt):
    _, text = _train_logged(tmp_path, dict(HOOK, init='uniform'), sparse_ckpt,
                            caplog)
    assert "carries masks, but init='uniform' draws new ones" in text
    assert "set init='checkpoint' to keep its masks" in text


def test_load_from_with_checkpoint_init_keeps_masks(tmp_path, caplog,
                                                    sparse_ckpt):
    runner, text = _train_logged(tmp_path,
                                 dict(HOOK, init='checkpoint', dynamic=False),
                                 sparse_ckpt, caplog)
    assert 'draws new ones' not in text
    hook = next(
        h for h in runner.hooks if type(h).__name__ == 'SparseTrainingHook')
    saved = masks_from_checkpoint(sparse_ckpt)
    assert set(saved) == set(hook.masks.names())
    for name, mask in saved.items():
        assert (hook.masks.mask(name).cpu() == mask).all(), name
