"""The sparse schedule across batch sizes (update interval counted in samples
at the recipe's batch) and the reference's SNIP details (plain
cross-entropy on an un-augmented batch, near-dense layers made dense)."""
import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.logging import MMLogger

from mmslak.engine.hooks import SparseTrainingHook
from mmslak.sparse.density import model_loss, snip_loss
from mmslak.sparse.schedule import rescaled_interval


class UpdateSamples(Hook):
    """Training samples seen when each mask update has just happened."""

    priority = 'LOW'  # after SparseTrainingHook

    def __init__(self, samples_per_iter, sparse_hook):
        self.samples_per_iter = samples_per_iter
        self.sparse_hook = sparse_hook
        self.samples = []
        self.updates = 0

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if self.sparse_hook(runner).num_updates > self.updates:
            self.updates = self.sparse_hook(runner).num_updates
            self.samples.append((runner.iter + 1) * self.samples_per_iter)


def run_schedule(build_runner, sparse_hook, tmp_path, batch_size, accumulation,
                 max_iters):
    """update_interval 2 optimizer steps at base batch 8 = every 16
    samples, on one process with ``batch_size`` x ``accumulation``."""
    recorder = UpdateSamples(batch_size, sparse_hook)
    optim = dict(
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
        accumulative_counts=accumulation)
    runner = build_runner(
        tmp_path,
        dict(
            type='SparseTrainingHook',
            init='uniform',
            update_interval=2,
            log_per_layer=False),
        max_iters=max_iters,
        batch_size=batch_size,
        optim_wrapper=optim,
        extra_hooks=[recorder])
    runner.auto_scale_lr = dict(base_batch_size=8, enable=False)
    messages = []
    info = runner.logger.info
    runner.logger.info = lambda msg, *a, **k: (messages.append(msg),
                                               info(msg, *a, **k))
    runner.train()
    return recorder.samples, sparse_hook(runner), messages


# each run: 48 samples; hand count: an update every 16 samples, none at
# the end of training -> after 16 and 32 samples
@pytest.mark.parametrize(
    'batch_size, accumulation, max_iters, steps, every_iters',
    [
        (8, 1, 6, 2, 2),  # the base batch: the interval as written
        (4, 1, 12, 4, 4),  # half the batch: twice the steps
        (2, 2, 24, 4, 8),  # 2 x 2 accumulated: 4 steps of 2 iterations
    ])
def test_updates_land_on_the_same_samples(tmp_path, batch_size, accumulation,
                                          max_iters, steps, every_iters,
                                          build_runner, sparse_hook):
    samples, hook, messages = run_schedule(build_runner, sparse_hook, tmp_path,
                                           batch_size, accumulation, max_iters)
    assert samples == [16, 32]
    assert hook._steps_per_update == steps
    logged = [m for m in messages if 'update_interval 2' in m]
    assert len(logged) == 1
    assert f'every {steps} optimizer steps' in logged[0]
    assert f'every {every_iters} iterations and 16 samples' in logged[0]


def test_without_auto_scale_lr_the_interval_is_in_steps(
        tmp_path, build_runner, sparse_hook):
    recorder = UpdateSamples(4, sparse_hook)
    runner = build_runner(
        tmp_path,
        dict(type='SparseTrainingHook', init='uniform', update_interval=3),
        max_iters=7,
        batch_size=4,
        extra_hooks=[recorder])
    assert runner.auto_scale_lr is None
    runner.train()
    assert recorder.samples == [12, 24]  # iterations 3 and 6


def test_rescaled_interval_values_and_errors():
    # the paper's SLaK-T: 2000 steps at 4096; 8 GPUs x 128 = 1024
    assert rescaled_interval(2000, 4096, 1024) == 8000
    assert rescaled_interval(2000, 4096, 4096) == 2000
    assert rescaled_interval(100, 4096, 8192) == 50
    assert rescaled_interval(3, 4096, 3000) == 4  # round(4.096)
    assert rescaled_interval(1, 8, 64) == 1  # never below one step
    assert rescaled_interval(7, None, 123) == 7
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match='update_interval'):
            rescaled_interval(bad, 8, 8)
    with pytest.raises(ValueError, match='base_batch_size'):
        rescaled_interval(4, 0, 8)
    with pytest.raises(ValueError, match='total batch'):
        rescaled_interval(4, 8, 0)


# ---------------------------------------------------------------------------
# SNIP as the reference


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


def test_near_dense_layers_are_made_dense():
    logger = MMLogger.get_instance('near_dense', log_level=logging.WARNING)
    runner = type('R', (), {'logger': logger})()
    masks = dict(
        a=torch.arange(1000) < 990,  # 0.990: dense
        b=torch.arange(1000) < 989,  # 0.989: kept
        c=torch.ones(10, dtype=torch.bool))  # 1.0: dense
    kept = SparseTrainingHook(init='uniform')._drop_near_dense(runner, masks)
    assert list(kept) == ['b'] and kept['b'] is masks['b']
    hook = SparseTrainingHook(init='uniform', dense_threshold=None)
    assert list(hook._drop_near_dense(runner, masks)) == ['a', 'b', 'c']
    with pytest.raises(ValueError, match='dense_threshold'):
        SparseTrainingHook(dense_threshold=0.)


def test_batch_from_a_batch_sampler_and_static_runs():
    """mmdet's AspectRatioBatchSampler leaves the loader's batch_size None;
    static (fine-tuning) runs need no schedule at all."""
    from types import SimpleNamespace
    logger = MMLogger.get_instance('sampler', log_level=logging.WARNING)
    wrapper = SimpleNamespace(_accumulative_counts=2)
    loader = SimpleNamespace(
        batch_size=None, batch_sampler=SimpleNamespace(batch_size=2))
    runner = SimpleNamespace(
        optim_wrapper=wrapper,
        train_dataloader=loader,
        auto_scale_lr=dict(base_batch_size=16),
        logger=logger)
    hook = SparseTrainingHook(update_interval=3)
    hook._set_schedule(runner)
    assert hook._accumulation == 2
    assert hook._steps_per_update == 12  # round(3 * 16 / (1 * 2 * 2))
    loader.batch_sampler = None
    with pytest.raises(ValueError, match='batch size per GPU'):
        hook._set_schedule(runner)
    static = SparseTrainingHook(init='checkpoint', dynamic=False)
    static._set_schedule(runner)  # nothing to know: no error
    assert not static._updates_after(12)
