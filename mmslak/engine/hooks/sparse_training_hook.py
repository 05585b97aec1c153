"""Dynamic (and static) sparse training as an mmengine hook: connects
:class:`mmslak.sparse.DynamicSparsity` to the Runner, as mmengine's
``EMAHook`` connects ``averaged_model.py``."""
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence

from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS
from mmengine.runner import get_priority

from mmslak.sparse.checkpoint import (decode_sparsity_state,
                                      masks_from_checkpoint)
from mmslak.sparse.dynamic import DynamicSparsity
from mmslak.sparse.schedule import rescaled_interval
from mmslak.sparse.summary import format_layer_rows
from mmslak.sparse.validation import check_positive_int


@HOOKS.register_module()
class SparseTrainingHook(Hook):
    """Sparse training of SLaK (and any model) at a constant density.

    At ``before_train`` the hook builds a :class:`DynamicSparsity` over the
    model (masks from ``init``, see there for the algorithm) and attaches
    it to every optimizer: the masks are applied after each real optimizer
    step (skipped AMP steps and accumulation iterations do not step), and
    every ``update_interval`` optimizer steps each layer prunes the
    fraction ``p_t`` of its active weights of smallest magnitude and
    regrows as many (``growth``), ``p_t`` decaying from ``prune_rate`` to
    ``final_prune_rate`` with a cosine over the run. The state is saved in
    ``checkpoint['sparsity']``, so ``--resume`` continues exactly.

    The averaged model of an ``EMAHook`` is masked after every iteration,
    after EMAHook's update (this hook's priority, 55, comes after
    EMAHook's NORMAL / ABOVE_NORMAL), and a position that becomes active
    takes the model's value, as the reference's
    ``ModelEma.update(model, mask)``. The hook does it rather than an EMA
    type of its own, so any ``ema_type`` works and configs keep upstream's
    ``EMAHook``.

    The update interval is a number of samples: ``update_interval``
    optimizer steps at the config's ``auto_scale_lr.base_batch_size`` (4096
    in the paper), rescaled to this run's total batch (world size x batch
    per GPU x ``accumulative_counts``) and logged. Without
    ``auto_scale_lr`` it is in optimizer steps at this run's batch.

    Args:
        density (float): fraction of active weights over the scope.
            Defaults to 0.6 (the paper's).
        init (str): 'snip' (on ``snip_batches`` real training batches of
            the per-GPU size, the reference's plain cross-entropy), 'erk',
            'uniform', or 'checkpoint' (the zero pattern of
            ``mask_checkpoint``, else the ``sparsity`` entry of the loaded
            ``load_from`` checkpoint, else the current weights' zeros).
            Defaults to 'snip'.
        scope (str): 'all' or 'large_kernel'. Defaults to 'all'.
        exclude (Sequence[str]): regular expressions of weight names kept
            dense. Defaults to ().
        dynamic (bool): prune and regrow; False = static masks (sparse
            fine-tuning). Defaults to True.
        update_interval (int): optimizer steps between updates at
            ``auto_scale_lr.base_batch_size``. Defaults to 2000.
        prune_rate (float): initial prune fraction. Defaults to 0.5.
        final_prune_rate (float): prune fraction at the end. Defaults to
            0.005.
        growth (str): 'random' (paper) or 'gradient' (RigL). Defaults to
            'random'.
        erk_power_scale (float): exponent of the ERK scores. Defaults to 1.
        snip_batches (int): training batches SNIP sums over. Defaults to 1.
        snip_random (bool): random masks at SNIP's per-layer densities
            (paper); False keeps the top-k positions. Defaults to True.
        dense_threshold (float, optional): initial layer density from which
            a layer is made dense. Defaults to 0.99 (the reference's).
        mask_checkpoint (str, optional): checkpoint of
            ``init='checkpoint'``. Defaults to None.
        mask_prefix_map (dict, optional): ``{old: new}`` prefixes renaming
            the checkpoint's masks, e.g. ``{'': 'backbone.'}``. Defaults to
            None.
        seed (int, optional): seed of the masks' generator. Defaults to
            None (the runner's seed).
        log_per_layer (bool): log the per-layer density table at each
            update. Defaults to True.
    """

    # after EMAHook (NORMAL = 50; ABOVE_NORMAL = 40 in our configs): the
    # averaged model is masked after its update; before LoggerHook (60)
    # and CheckpointHook (90)
    priority = 55

    def __init__(self,
                 density: float = 0.6,
                 init: str = 'snip',
                 scope: str = 'all',
                 exclude: Sequence[str] = (),
                 dynamic: bool = True,
                 update_interval: int = 2000,
                 prune_rate: float = 0.5,
                 final_prune_rate: float = 0.005,
                 growth: str = 'random',
                 erk_power_scale: float = 1.0,
                 snip_batches: int = 1,
                 snip_random: bool = True,
                 dense_threshold: Optional[float] = 0.99,
                 mask_checkpoint: Optional[str] = None,
                 mask_prefix_map: Optional[Dict[str, str]] = None,
                 seed: Optional[int] = None,
                 log_per_layer: bool = True) -> None:
        # the arguments named as DynamicSparsity's options, checked now (a
        # bad config fails when the hook is built); before_train adds the
        # model, the run's length, the seed and the update interval
        # rescaled to this run's batch
        arguments = locals()
        options = {name: arguments[name] for name in DynamicSparsity.OPTIONS}
        self.options = DynamicSparsity.check_options(**options)
        self.update_interval = self.options.pop('update_interval')
        self.snip_batches = check_positive_int('snip_batches', snip_batches)
        self.mask_checkpoint = mask_checkpoint
        self.mask_prefix_map = dict(mask_prefix_map or {})
        self.seed = seed
        self.log_per_layer = log_per_layer
        self.sparsity: Optional[DynamicSparsity] = None
        self._loaded_state: Optional[dict] = None
        self._accumulation = 1
        self._emas = []
        self._new_in_emas = []

    @property
    def masks(self):
        """The :class:`SparseMasks` (None before training)."""
        return None if self.sparsity is None else self.sparsity.masks

    # ------------------------------------------------------------------
    # set-up
    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        wrappers = _optim_wrappers(runner)
        steps = self._steps_per_update(runner, wrappers)
        seed = self.seed if self.seed is not None else (runner.seed or 0)
        self.sparsity = DynamicSparsity(
            model,
            update_interval=steps,
            total_steps=math.ceil(runner.max_iters / self._accumulation),
            seed=int(seed),
            **self.options)
        state, self._loaded_state = self._loaded_state, None
        resumed = state is not None and runner.iter > 0
        if resumed:
            self.sparsity.load_state_dict(state)
        elif self.options['init'] == 'checkpoint':
            self.sparsity.init_masks(masks=self._checkpoint_masks(state))
        else:
            if state is not None:  # load_from a sparse checkpoint
                runner.logger.warning(
                    'SparseTrainingHook: the loaded checkpoint carries '
                    f'masks, but init={self.options["init"]!r} draws new '
                    'ones (its weights are kept, its zero pattern is not); '
                    "set init='checkpoint' to keep its masks")
            batches = self._snip_batches(runner.train_dataloader) if \
                self.options['init'] == 'snip' else None
            self.sparsity.init_masks(batches=batches)
        self.sparsity.num_steps = runner.iter // self._accumulation
        attached = set()
        for wrapper in wrappers:
            attached.update(self.sparsity.attach(wrapper.optimizer))
        orphans = set(self.masks.names()) - attached
        if orphans:
            runner.logger.warning(
                'SparseTrainingHook: masked weights not in any optimizer '
                f'(kept masked, never updated): {sorted(orphans)[:5]}')
        self._emas = self._ema_models(runner)
        for ema in self._emas:
            self.sparsity.mask_average(ema)
        self._log(runner, 'resumed' if resumed else 'initial masks')

    def _ema_models(self, runner) -> list:
        """The averaged models of EMA hooks, which must run before this
        hook each iteration."""
        emas = []
        for hook in runner.hooks:
            ema = getattr(hook, 'ema_model', None)
            if hook is self or ema is None:
                continue
            if get_priority(hook.priority) >= get_priority(self.priority):
                raise ValueError(
                    f'{type(hook).__name__} (priority {hook.priority}) must '
                    'run before SparseTrainingHook (priority '
                    f'{self.priority}) so that its average is masked after '
                    'its update; give it a higher priority (e.g. NORMAL)')
            emas.append(ema)
        return emas

    def _steps_per_update(self, runner, wrappers) -> int:
        """Optimizer steps between updates at this run's total batch."""
        # mmengine keeps the accumulation count private
        counts = {getattr(w, '_accumulative_counts', 1) for w in wrappers}
        if len(counts) != 1:
            raise ValueError('SparseTrainingHook needs one accumulative_counts'
                             f' for all optimizers, got {sorted(counts)}')
        self._accumulation = counts.pop()
        if not self.options['dynamic']:
            return self.update_interval
        loader = runner.train_dataloader
        # with a batch sampler (mmdet's AspectRatioBatchSampler) the loader
        # has no batch_size of its own
        per_gpu = loader.batch_size or getattr(loader.batch_sampler,
                                               'batch_size', None)
        if not per_gpu:
            raise ValueError('SparseTrainingHook cannot tell the batch size '
                             'per GPU of the training dataloader')
        total = get_world_size() * per_gpu * self._accumulation
        base = (runner.auto_scale_lr or {}).get('base_batch_size')
        steps = rescaled_interval(self.update_interval, base, total)
        at = f'{base} samples per step' if base else 'this run\'s batch'
        runner.logger.info(
            f'SparseTrainingHook: update_interval {self.update_interval} '
            f'optimizer steps at {at} -> every {steps} optimizer steps at '
            f'{total} samples per step ({get_world_size()} GPUs x {per_gpu} '
            f'x {self._accumulation} accumulated), i.e. every '
            f'{steps * self._accumulation} iterations and {steps * total} '
            'samples')
        return steps

    def _checkpoint_masks(self, state) -> Optional[dict]:
        """init='checkpoint': masks of ``mask_checkpoint``, else of the
        loaded checkpoint, renamed by ``mask_prefix_map`` (None: the
        weights' zeros)."""
        if self.mask_checkpoint is not None:
            masks = masks_from_checkpoint(self.mask_checkpoint)
        elif state is not None:
            masks = state['masks']
        else:
            return None
        renamed = OrderedDict()
        for name, mask in masks.items():
            for old, new in self.mask_prefix_map.items():
                if name.startswith(old):
                    name = new + name[len(old):]
                    break
            renamed[name] = mask
        return renamed

    def _snip_batches(self, loader) -> list:
        """The first ``snip_batches`` batches the training loop will see.

        mmengine's InfiniteSampler iterates ONE shared index generator: a
        throw-away iterator would consume it and, once closed, end it (the
        training loop then stops with StopIteration). It draws from a fresh
        generator instead, which starts where the shared one does. Every
        rank draws them, so that data loading stays in step.
        """
        sampler = getattr(loader.batch_sampler, 'sampler', loader.sampler)
        shared = sampler.indices if isinstance(sampler,
                                               InfiniteSampler) else None
        if shared is not None:
            sampler.indices = sampler._indices_of_rank()
        try:
            it = iter(loader)
            return [next(it) for _ in range(self.snip_batches)]
        finally:
            if shared is not None:
                sampler.indices = shared

    # ------------------------------------------------------------------
    # training
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._new_in_emas = [
            self.sparsity.new_in_average(ema) for ema in self._emas
        ]

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        done = runner.iter + 1
        if done % self._accumulation == 0 and self.sparsity.step():
            self._log(
                runner, f'update {self.sparsity.num_updates} at iter {done}, '
                f'prune rate {self.sparsity.current_prune_rate:.4f}')
        for ema, new in zip(self._emas, self._new_in_emas):
            self.sparsity.mask_average(ema, new)
        self._new_in_emas = []
        hub = runner.message_hub
        hub.update_scalar('train/sparsity_density', self._density)
        hub.update_scalar('train/sparsity_explored', self._explored)
        # the schedule's p_t at this step (0 for fixed masks)
        hub.update_scalar(
            'train/sparsity_prune_rate',
            self.sparsity.prune_rate_at(done / self._accumulation))

    def after_train(self, runner) -> None:
        if self.sparsity is not None:
            self.sparsity.detach()

    # ------------------------------------------------------------------
    # checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.sparsity is not None and self.masks is not None:
            checkpoint['sparsity'] = self.sparsity.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('sparsity')
        self._loaded_state = decode_sparsity_state(state) if isinstance(
            state, dict) and 'masks' in state else None

    # ------------------------------------------------------------------
    # logging
    def _log(self, runner, what: str) -> None:
        stats = self.masks.stats()
        self._density = stats['density']
        self._explored = stats['explored_ratio']
        model = self.sparsity.model
        numel = sum(p.numel() for p in model.parameters())
        # active = every parameter but the masked-out weights (the paper's
        # non-zero count; regrown weights are active although still 0)
        nonzero = numel - (stats['total'] - stats['active'])
        runner.logger.info(
            f'SparseTrainingHook {what}: {len(self.masks)} masked layers, '
            f'{stats["num_dense_layers"]} dense in scope, density '
            f'{stats["density"]:.6f} ({stats["active"]}/{stats["total"]}), '
            f'explored {stats["explored_ratio"]:.4f}, model active '
            f'parameters {nonzero} of {numel}')
        if self.log_per_layer:
            runner.logger.info('\n' + format_layer_rows(
                (n, tuple(self.masks.params[n].shape), active, numel)
                for n, (active, numel, _) in stats['layers'].items()))


def _optim_wrappers(runner) -> list:
    """The runner's optimizer wrappers (one, or an OptimWrapperDict's)."""
    wrapper = runner.optim_wrapper
    return list(wrapper.values()) if isinstance(
        wrapper, OptimWrapperDict) else [wrapper]
