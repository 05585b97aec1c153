"""SNIP draws the batches the training loop will see first, without
disturbing the training data stream (mmengine's InfiniteSampler shares one
index generator between all iterators of a loader)."""
import pytest
import torch
from mmengine.hooks import Hook


class FirstBatch(Hook):
    """Records the inputs of every training iteration."""

    def __init__(self):
        self.inputs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.inputs.append(data_batch['inputs'].clone())


@pytest.mark.parametrize('sampler', ['InfiniteSampler', 'DefaultSampler'])
def test_snip_batch_is_the_first_training_batch(tmp_path, sampler, monkeypatch,
                                                build_runner):
    from mmslak.engine.hooks import sparse_training_hook as module
    seen = []
    real = module.snip_scores

    def spy(model, names, batches):
        seen.extend(b['inputs'].clone() for b in batches)
        return real(model, names, batches)

    monkeypatch.setattr(module, 'snip_scores', spy)
    record = FirstBatch()
    # 64 images at batch 4: 20 iterations run past the end of one pass
    runner = build_runner(
        tmp_path,
        dict(
            type='SparseTrainingHook',
            density=0.6,
            init='snip',
            update_interval=4,
            prune_rate=0.5,
            log_per_layer=False),
        max_iters=20,
        extra_hooks=[record],
        sampler=sampler)
    runner.train()
    assert runner.iter == 20 and len(record.inputs) == 20
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], record.inputs[0], rtol=0, atol=0)
    # the stream went on past the SNIP draw: no batch repeats within a pass
    firsts = {tuple(x[0, 0, 0, :4].tolist()) for x in record.inputs[:16]}
    assert len(firsts) == 16
