"""Imported by the distributed test's config (``custom_imports``): after
training, each rank saves its sparse masks (and where they have been), its
number of mask updates, its weights and the mmslak it imported to
``WORK_DIR/rank{R}.pth``."""
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

import mmslak


@HOOKS.register_module()
class DumpRankStateHook(Hook):

    def after_train(self, runner) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        sparse = [
            h for h in runner.hooks if type(h).__name__ == 'SparseTrainingHook'
        ]
        masks = sparse[0].masks
        torch.save(
            dict(
                rank=get_rank(),
                world_size=get_world_size(),
                wrapper=type(runner.model).__name__,
                mmslak=mmslak.__file__,
                masks=masks.bool_masks('cpu'),
                explored={
                    k: v.cpu()
                    for k, v in masks.explored.items()
                },
                num_updates=sparse[0].sparsity.num_updates,
                weights={
                    k: v.detach().cpu()
                    for k, v in model.state_dict().items()
                }), osp.join(runner.work_dir, f'rank{get_rank()}.pth'))
