"""A tiny SLaK classifier, data and Runner shared by the sparse tests,
served as fixtures of the same names (``build_runner``, ``sparse_hook``,
``final_state``, ``resume_hook``, ``tiny_slak_classifier``, ``random_images``);
``tiny_child.py`` (beside this file) is the 2-rank SNIP test's child.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch.utils.data import Dataset

import mmslak  # noqa: F401  (registers SLaK and the hook)
from mmslak.models.backbones.slak import SLaK

NUM_CLASSES = 4


class TinySLaKClassifier(BaseModel):
    """SLaK (depths 1,1,1,1, dims 8,16,16,16, kernels 7,7,5,5, small 3)
    and a linear head, trained with cross-entropy."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = SLaK(
            arch=dict(depths=[1, 1, 1, 1], dims=[8, 16, 16, 16]),
            width_factor=1.0,
            kernel_sizes=(7, 7, 5, 5),
            small_kernel=3,
            layer_scale_init_value=1.0)
        self.head = nn.Linear(16, NUM_CLASSES)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs)[-1])
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class RandomImages(Dataset):
    """Fixed random 3x32x32 images with labels ``i % 4``."""

    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(1234)
        self.images = torch.randn(n, 3, 32, 32, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return dict(inputs=self.images[i], labels=i % NUM_CLASSES)


def build_runner(work_dir,
                 hook=None,
                 max_iters=8,
                 optim_wrapper=None,
                 extra_hooks=(),
                 ckpt_interval=1000,
                 resume=False,
                 load_from=None,
                 name='tiny',
                 seed=0,
                 batch_size=4,
                 max_epochs=None,
                 sampler='DefaultSampler'):
    from mmengine.runner import Runner
    hooks = ([hook] if hook is not None else []) + list(extra_hooks)
    if optim_wrapper is None:
        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05))
    return Runner(
        model=TinySLaKClassifier(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=RandomImages(),
            sampler=dict(type=sampler, shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=batch_size,
            num_workers=0),
        optim_wrapper=optim_wrapper,
        train_cfg=dict(by_epoch=False, max_iters=max_iters)
        if max_epochs is None else dict(by_epoch=True, max_epochs=max_epochs),
        custom_hooks=hooks,
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=ckpt_interval, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1000)),
        randomness=dict(seed=seed),
        resume=resume,
        load_from=load_from,
        log_level='WARNING')


def sparse_hook(runner):
    from mmslak.engine.hooks import SparseTrainingHook
    return [h for h in runner.hooks if isinstance(h, SparseTrainingHook)][0]


def final_state(runner) -> dict:
    model = runner.model.module if hasattr(runner.model,
                                           'module') else runner.model
    hook = sparse_hook(runner)
    return dict(
        weights={
            k: v.detach().clone()
            for k, v in model.state_dict().items()
        },
        masks=hook.masks.bool_masks('cpu'),
        explored={
            k: v.cpu()
            for k, v in hook.masks.explored.items()
        },
        num_updates=hook.sparsity.num_updates)


RESUME_HOOK = dict(
    type='SparseTrainingHook',
    density=0.6,
    init='snip',
    update_interval=2,
    prune_rate=0.5,
    seed=3)


@pytest.fixture(name='build_runner', scope='session')
def _build_runner():
    return build_runner


@pytest.fixture(name='sparse_hook', scope='session')
def _sparse_hook():
    return sparse_hook


@pytest.fixture(name='final_state', scope='session')
def _final_state():
    return final_state


@pytest.fixture(scope='session')
def resume_hook():
    """The SparseTrainingHook config of the resume tests (copy it before
    changing it)."""
    return copy.deepcopy(RESUME_HOOK)


@pytest.fixture(scope='session')
def tiny_slak_classifier():
    """The :class:`TinySLaKClassifier` class."""
    return TinySLaKClassifier


@pytest.fixture(scope='session')
def random_images():
    """The :class:`RandomImages` dataset class."""
    return RandomImages


@pytest.fixture(scope='session')
def tiny_child_script():
    """``tiny_child.py``: SNIP under a gathering SyncBN on 2 gloo ranks
    (``snip_syncbn OUT_DIR``) in a child process."""
    return osp.join(osp.dirname(osp.abspath(__file__)), 'tiny_child.py')
