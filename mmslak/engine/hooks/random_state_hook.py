"""Every random state a training run depends on, saved in its checkpoints
and restored on resume, so that a resumed run equals the uninterrupted one
(bit for bit on the CPU)."""
import logging
import random
from typing import Callable, Iterator, List, Optional

import numpy as np
import torch
from mmengine import dist
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

__all__ = ['RandomStateHook', 'capture_random_state', 'restore_random_state']


def capture_random_state() -> dict:
    """Python's ``random``, numpy's global and torch's CPU and CUDA
    generators of this process, in types torch's weights-only loader
    reads (no numpy arrays)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return dict(
        python=(version, list(internal), gauss),
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(cached)),
        torch=torch.get_rng_state(),
        cuda=cuda)


def restore_random_state(state: dict) -> None:
    """Inverse of :func:`capture_random_state`. CUDA generators are restored
    for the devices both the saved state and this process have; a different
    device count (a resume on another number of GPUs) is warned about."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    saved = state['cuda']
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device, cuda_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(cuda_state, device)
    if saved and len(saved) != visible:
        print_log(
            f'RandomStateHook: the checkpoint holds {len(saved)} CUDA '
            f'generator states, this process sees {visible} CUDA devices: '
            f'restored {min(len(saved), visible)} of them (and the CPU, '
            'numpy and python generators); an exact resume needs the same '
            'world size and GPUs per process',
            logger='current',
            level=logging.WARNING)


def loader_record(runner) -> dict:
    """What decides the data stream and the workers' seeds on this rank:
    mmengine's ``worker_init_fn`` seeds worker ``w`` of rank ``r`` with
    ``num_workers * r + w + seed``; the sampler orders by its own seed, and
    its position is the checkpoint's ``meta`` epoch and iteration."""
    loader = runner.train_dataloader
    sampler = getattr(loader, 'sampler', None)
    workers = int(getattr(loader, 'num_workers', 0))
    rank, seed = dist.get_rank(), runner.seed
    return dict(
        seed=seed,
        sampler=type(sampler).__name__,
        sampler_seed=getattr(sampler, 'seed', None),
        batch_size=getattr(loader, 'batch_size', None),
        num_workers=workers,
        persistent_workers=bool(getattr(loader, 'persistent_workers', False)),
        worker_seeds=[workers * rank + w + seed for w in range(workers)],
        world_size=dist.get_world_size())


class _RestoreAfterSkip:
    """Wraps the train loop's infinite iterator: lets the loop replay the
    ``skip`` batches it has already trained on (mmengine advances the
    iterator on resume), then restores the random states just before the
    first batch that is trained on again, as the uninterrupted run had
    them when it fetched that batch."""

    def __init__(self, iterator: Iterator, skip: int,
                 restore: Callable[[], None]) -> None:
        self._iterator = iterator
        self._skip = skip
        self._restore: Optional[Callable[[], None]] = restore

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        elif self._restore is not None:
            restore, self._restore = self._restore, None
            restore()
        return next(self._iterator)

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save every random state of every rank in checkpoints; restore it on
    resume at the point where the uninterrupted run used it.

    mmengine 0.10 saves only the seed: a resumed run restarts the global
    generators from the seed (drop path, Mixup/CutMix and, with
    ``num_workers=0``, the augmentations then differ from the uninterrupted
    run) and validation consumes random numbers (each ``iter()`` of a
    DataLoader draws a base seed), so even the validation interval changes
    training. This hook:

    - captures, per rank, Python's ``random``, numpy's global generator and
      torch's CPU and CUDA generators after each training iteration and
      epoch; when distributed, gathers all ranks' states only where a
      ``CheckpointHook`` is about to save (``Runner.save_checkpoint`` runs on
      rank 0 alone, so the gather cannot wait for it); saves them in
      ``checkpoint['random_states']`` with the sampler and worker seeds;
    - makes validation neutral: the states are put back after ``val``;
    - on resume, restores this rank's states just before the first batch
      that is trained on again: after mmengine's iteration-based loop has
      replayed the skipped batches (workers seeded by mmengine's
      ``worker_init_fn`` then reach the same state too), or at the start
      of the epoch for epoch-based loops;
    - warns when the data stream cannot be repeated (another seed, number
      of workers or world size, or persistent workers in an epoch-based
      run, whose workers' states live in other processes); a resume on
      another world size or number of GPUs restores what matches and warns
      (an exact resume needs the same world size).

    Deterministic kernels stay the user's choice (``randomness``).

    Example::

        custom_hooks = [dict(type='RandomStateHook')]
    """

    # after every other hook of an iteration (so after any random draw in
    # them), just before CheckpointHook (VERY_LOW = 90) saves
    priority = 89

    def __init__(self) -> None:
        self._latest: Optional[dict] = None  # this rank's, after the iter
        self._gathered: Optional[List[dict]] = None  # every rank's _latest
        self._loaded: Optional[dict] = None
        self._before_val: Optional[dict] = None
        self._pending: Optional[dict] = None

    # -- capture -------------------------------------------------------
    def _capture(self, gather: bool) -> None:
        self._latest = capture_random_state()
        self._gathered = None
        if gather:
            self._gather()

    def _gather(self) -> None:
        """Every rank's latest state (collective: every rank calls it at
        the same point)."""
        if dist.get_world_size() > 1:
            self._gathered = dist.all_gather_object(self._latest)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self._capture(any(_saves_after_iter(h, runner) for h in runner.hooks))

    def after_train_epoch(self, runner) -> None:
        self._capture(any(_saves_after_epoch(h, runner) for h in runner.hooks))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._latest is None:  # a checkpoint before any iteration
            self._latest = capture_random_state()
        states = self._gathered
        if states is None:  # one process, or a save no hook announced
            states = [self._latest] + [None] * (dist.get_world_size() - 1)
        checkpoint['random_states'] = dict(
            version=1, ranks=states, loader=loader_record(runner))

    # -- validation leaves training's random streams alone ---------------
    def before_val(self, runner) -> None:
        self._before_val = capture_random_state()
        if self._latest is not None and self._gathered is None and any(
                getattr(h, 'save_best', None) for h in _savers(runner)):
            self._gather()  # a best checkpoint may be saved after val

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            restore_random_state(self._before_val)
            self._before_val = None

    # -- resume --------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('random_states')
        if self._loaded is None:
            self._loaded = {}  # loaded, but saved without this hook

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None or (runner.iter == 0 and runner.epoch == 0):
            return  # a new run (``load_from`` only takes the weights)
        if not loaded:
            runner.logger.warning(
                'RandomStateHook: the resumed checkpoint has no random '
                'states (saved without this hook); the run continues from '
                'the seed and will not repeat the uninterrupted one exactly')
            return
        self._check_loader(runner, loaded['loader'])
        ranks, rank = loaded['ranks'], dist.get_rank()
        if len(ranks) != dist.get_world_size():
            runner.logger.warning(
                f'RandomStateHook: the checkpoint has the random states of '
                f'{len(ranks)} ranks, this run has {dist.get_world_size()}; '
                'rank states restored where they exist (an exact resume '
                'needs the same world size)')
        if rank >= len(ranks) or ranks[rank] is None:
            runner.logger.warning(
                f'RandomStateHook: no random states for rank {rank} in the '
                'checkpoint; this rank continues from the seed')
            return
        self._pending = ranks[rank]
        runner.logger.info(
            f'RandomStateHook: random states of rank {rank} restored at '
            f'epoch {runner.epoch}, iter {runner.iter} (before the next '
            'training batch)')

    def before_train_epoch(self, runner) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop.dataloader_iterator, loop.iter,
                lambda: restore_random_state(state))
        else:
            restore_random_state(state)

    @staticmethod
    def _check_loader(runner, saved: dict) -> None:
        now = loader_record(runner)
        keys = ('seed', 'sampler', 'sampler_seed', 'batch_size', 'num_workers',
                'world_size')
        changed = [
            f'{k}: {saved.get(k)!r} -> {now[k]!r}' for k in keys
            if saved.get(k) != now[k]
        ]
        if now['persistent_workers'] and not hasattr(runner.train_loop,
                                                     'dataloader_iterator'):
            changed.append('persistent_workers=True in an epoch-based loop '
                           '(the workers\' states are not restored)')
        if changed:
            runner.logger.warning(
                'RandomStateHook: the data stream cannot repeat the '
                'uninterrupted run: ' + '; '.join(changed))


def _savers(runner) -> List[CheckpointHook]:
    return [h for h in runner.hooks if isinstance(h, CheckpointHook)]


# CheckpointHook's own conditions (mmengine 0.10), asked on every rank so
# that all of them gather just before rank 0 saves.
def _saves_after_iter(hook, runner) -> bool:
    return isinstance(hook, CheckpointHook) and not hook.by_epoch and (
        hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or
        (hook.save_last and hook.is_last_train_iter(runner)))


def _saves_after_epoch(hook, runner) -> bool:
    return isinstance(hook, CheckpointHook) and hook.by_epoch and (
        hook.every_n_epochs(runner, hook.interval, hook.save_begin) or
        (hook.save_last and hook.is_last_train_epoch(runner)))
