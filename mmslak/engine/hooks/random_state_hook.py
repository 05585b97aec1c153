"""Every random state a training run depends on, saved in its checkpoints
and restored on resume, so that a resumed run equals the uninterrupted one
(bit for bit on the CPU)."""
import random
from typing import Callable, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
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
    """Inverse of :func:`capture_random_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        if len(state['cuda']) != torch.cuda.device_count():
            raise RuntimeError(
                f'the checkpoint holds {len(state["cuda"])} CUDA generator '
                f'states, this process sees {torch.cuda.device_count()} '
                'devices')
        torch.cuda.set_rng_state_all(state['cuda'])


def loader_record(runner) -> dict:
    """What decides the data stream and the workers' seeds on this rank:
    mmengine's ``worker_init_fn`` seeds worker ``w`` of rank ``r`` with
    ``num_workers * r + w + seed``; the sampler orders by its own seed, and
    its position is the checkpoint's ``meta`` epoch and iteration."""
    loader = runner.train_dataloader
    sampler = getattr(loader, 'sampler', None)
    workers = int(getattr(loader, 'num_workers', 0))
    rank, seed = get_rank(), runner.seed
    return dict(
        seed=seed,
        sampler=type(sampler).__name__,
        sampler_seed=getattr(sampler, 'seed', None),
        batch_size=getattr(loader, 'batch_size', None),
        num_workers=workers,
        persistent_workers=bool(getattr(loader, 'persistent_workers', False)),
        worker_seeds=[workers * rank + w + seed for w in range(workers)],
        world_size=get_world_size())


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
      epoch (all ranks gathered when distributed; saved in
      ``checkpoint['random_states']`` with the sampler and worker seeds);
    - makes validation neutral: the states are put back after ``val``;
    - on resume, restores this rank's states just before the first batch
      that is trained on again: after mmengine's iteration-based loop has
      replayed the skipped batches (workers seeded by mmengine's
      ``worker_init_fn`` then reach the same state too), or at the start
      of the epoch for epoch-based loops;
    - warns when the data stream cannot be repeated (another seed, number
      of workers or world size, or persistent workers in an epoch-based
      run, whose workers' states live in other processes).

    Deterministic kernels stay the user's choice (``randomness``).

    Example::

        custom_hooks = [dict(type='RandomStateHook')]
    """

    # after every other hook of an iteration (so after any random draw in
    # them), just before CheckpointHook (VERY_LOW = 90) saves
    priority = 89

    def __init__(self) -> None:
        self._latest: Optional[List[dict]] = None
        self._loaded: Optional[dict] = None
        self._before_val: Optional[dict] = None
        self._pending: Optional[dict] = None

    # -- capture -------------------------------------------------------
    def _capture(self) -> None:
        state = capture_random_state()
        self._latest = (
            all_gather_object(state) if get_world_size() > 1 else [state])

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self._capture()

    def after_train_epoch(self, runner) -> None:
        self._capture()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = self._latest
        if states is None:  # a checkpoint before any iteration
            states = [capture_random_state()] * get_world_size()
        checkpoint['random_states'] = dict(
            version=1, ranks=states, loader=loader_record(runner))

    # -- validation leaves training's random streams alone ---------------
    def before_val(self, runner) -> None:
        self._before_val = capture_random_state()

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
        ranks, rank = loaded['ranks'], get_rank()
        if len(ranks) != get_world_size():
            runner.logger.warning(
                f'RandomStateHook: the checkpoint has the random states of '
                f'{len(ranks)} ranks, this run has {get_world_size()}; '
                'rank states restored where they exist')
            if rank >= len(ranks):
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
