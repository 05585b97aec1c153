"""Dynamic (and static) sparse training as an mmengine hook."""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dist import broadcast, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS

from mmslak.sparse.checkpoint import (decode_sparsity_state,
                                      encode_sparsity_state,
                                      masks_from_checkpoint)
from mmslak.sparse.density import (densities_to_counts, erk_densities,
                                   random_mask, snip_counts, snip_scores,
                                   topk_indices, uniform_densities)
from mmslak.sparse.masks import SparseMasks
from mmslak.sparse.prune_grow import (cosine_prune_rate, num_to_prune,
                                      reset_optimizer_state)
from mmslak.sparse.schedule import rescaled_interval
from mmslak.sparse.scope import select_sparse_params, sparse_shapes
from mmslak.sparse.validation import (check_density, check_exclude,
                                      check_masks_keep_weights,
                                      check_masks_matched)

INITS = ('snip', 'erk', 'uniform', 'checkpoint')
GROWTHS = ('random', 'gradient')


@HOOKS.register_module()
class SparseTrainingHook(Hook):
    """Sparse training of SLaK (and any model) at a constant density.

    At ``before_train`` the hook builds one mask per weight in ``scope``
    (initial densities from ``init``), zeros the inactive weights and
    registers a post-step hook on every optimizer so that the masks are
    re-applied after each real optimizer step: skipped AMP steps and
    gradient-accumulation iterations do not step, and weight decay cannot
    revive a masked weight. With ``dynamic=True``, every
    ``update_interval`` optimizer steps (counted at the recipe's batch, see
    below) each layer drops the fraction ``p_t`` of its active weights
    with the smallest magnitude and regrows as many (``growth``),
    zero-initialised with their optimizer state reset;
    ``p_t`` decays from ``prune_rate`` to ``final_prune_rate`` with a
    cosine over ``runner.max_iters``. Masks, the ever-active (explored)
    masks and the schedule state are saved in ``checkpoint['sparsity']``,
    so ``--resume`` continues exactly. Decisions are taken on rank 0 and
    broadcast, so every rank holds the same masks. The weights of an
    ``EMAHook``'s averaged model are masked too, before each validation and
    checkpoint (masked positions then stay 0 in the average: it only
    mixes in zeros).

    The update interval is a number of samples: ``update_interval``
    optimizer steps at the config's ``auto_scale_lr.base_batch_size`` (the
    total batch the recipe was written for; 4096 in the paper). The hook
    rescales it to this run's total batch (world size x batch per GPU x
    ``optim_wrapper.accumulative_counts``), so a run on fewer GPUs updates
    the masks after as many samples as the paper, and with gradient
    accumulation the interval counts optimizer steps, not iterations. The
    effective interval is logged at the start. Without ``auto_scale_lr`` the
    interval is in optimizer steps at whatever batch the run uses.

    Args:
        density: target fraction of active weights over the scope (0.6
            in the paper).
        init: 'snip' (global top-k of |w*grad| on ``snip_batches`` real
            training batches of the per-GPU size, with plain cross-entropy
            and no batch augments as the reference, then random masks at
            those per-layer densities), 'erk', 'uniform', or 'checkpoint'
            (keep the zero pattern of a checkpoint: ``mask_checkpoint``,
            else the ``sparsity`` entry of the loaded ``load_from``
            checkpoint, else the current weights' zeros).
        scope: 'all' (every 2-D / 4-D weight) or 'large_kernel' (only the
            Kx5 / 5xK kernels).
        exclude: regular expressions of weight names kept dense.
        dynamic: prune and regrow during training; False = static masks
            (sparse fine-tuning).
        update_interval: optimizer steps between prune/regrow updates at
            ``auto_scale_lr.base_batch_size`` (see above).
        prune_rate: initial prune fraction ``p_0``.
        final_prune_rate: ``p_t`` at the end of training.
        growth: 'random' (paper) or 'gradient' (RigL).
        erk_power_scale: exponent of the ERK scores.
        snip_batches: training batches the SNIP scores are summed over.
        snip_random: after SNIP, draw random masks at its per-layer
            densities (paper); False keeps the top-k positions themselves.
        dense_threshold: a layer whose initial density (SNIP / ERK /
            uniform) is at least this is made fully dense, as the reference
            does after its initialisation (sparse_core.py ``Masking.init``:
            ``layer_density >= 0.99``); None keeps every mask.
        mask_checkpoint: path of the checkpoint for ``init='checkpoint'``.
        mask_prefix_map: renames checkpoint mask names, ``{old: new}``
            prefixes, e.g. ``{'': 'backbone.'}`` for a reference
            checkpoint used in a detector.
        seed: seed of the hook's own random generator (default: the
            runner's seed).
        log_per_layer: log the per-layer density table at each update.
    """

    # 35: before EMAHook (NORMAL, or ABOVE_NORMAL = 40 in our configs), so
    # EMA weights are masked before EMAHook saves or swaps them; before
    # CheckpointHook and LoggerHook too
    priority = 35

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
        density = check_density(density)  # a float in (0, 1]
        exclude = check_exclude(exclude)  # a list of patterns
        self._check_args(init, growth, dynamic, update_interval, prune_rate,
                         final_prune_rate, snip_batches, dense_threshold)
        self.density = density
        self.init = init
        self.scope = scope
        self.exclude = exclude
        self.dynamic = dynamic
        self.update_interval = update_interval
        self.prune_rate = prune_rate
        self.final_prune_rate = final_prune_rate
        self.growth = growth
        self.erk_power_scale = erk_power_scale
        self.snip_batches = snip_batches
        self.snip_random = snip_random
        self.dense_threshold = dense_threshold
        self.mask_checkpoint = mask_checkpoint
        self.mask_prefix_map = dict(mask_prefix_map or {})
        self.seed = seed
        self.log_per_layer = log_per_layer

        self.masks: Optional[SparseMasks] = None
        self.num_updates = 0
        self.current_prune_rate = prune_rate
        self.last_update: Dict[str, dict] = OrderedDict()
        self._generator = torch.Generator()
        self._loaded_state: Optional[dict] = None
        self._optimizer_of: Dict[str, torch.optim.Optimizer] = {}
        self._handles = []
        self._capture = False
        self._grads: Dict[str, torch.Tensor] = {}
        self._steps_per_update = update_interval  # set in before_train
        self._accumulation = 1

    @staticmethod
    def _check_args(init, growth, dynamic, update_interval, prune_rate,
                    final_prune_rate, snip_batches, dense_threshold) -> None:
        if init not in INITS:
            raise ValueError(f'init must be one of {INITS}, got {init!r}')
        if growth not in GROWTHS:
            raise ValueError(
                f'growth must be one of {GROWTHS}, got {growth!r}')
        if dynamic and (not isinstance(update_interval, int)
                        or update_interval < 1):
            raise ValueError('update_interval must be a positive int, got '
                             f'{update_interval!r}')
        if not 0. <= final_prune_rate <= prune_rate <= 1.:
            raise ValueError('need 0 <= final_prune_rate <= prune_rate <= 1,'
                             f' got {final_prune_rate}, {prune_rate}')
        if snip_batches < 1:
            raise ValueError(f'snip_batches must be >= 1, got {snip_batches}')
        if dense_threshold is not None and not 0. < dense_threshold <= 1.:
            raise ValueError('dense_threshold must be in (0, 1] or None, got '
                             f'{dense_threshold!r}')

    # ------------------------------------------------------------------
    # set-up
    @staticmethod
    def _unwrap(model):
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _wrappers(runner):
        """The runner's optimizer wrappers (one, or an OptimWrapperDict's)."""
        wrapper = runner.optim_wrapper
        return list(wrapper.values()) if isinstance(
            wrapper, OptimWrapperDict) else [wrapper]

    def before_train(self, runner) -> None:
        model = self._unwrap(runner.model)
        params = select_sparse_params(model, self.scope, self.exclude)
        seed = self.seed if self.seed is not None else (runner.seed or 0)
        self._generator.manual_seed(int(seed))
        state = self._loaded_state
        resumed = state is not None and runner.iter > 0
        if resumed:
            unknown = set(state['masks']) - set(params)
            if unknown:
                raise KeyError(
                    'the resumed checkpoint has masks for weights outside '
                    f'scope={self.scope!r}: {sorted(unknown)[:5]}')
            masks = state['masks']
        elif self.init == 'checkpoint':
            masks = self._checkpoint_masks(runner, params)
        else:
            if state is not None:  # load_from a sparse checkpoint
                runner.logger.warning(
                    'SparseTrainingHook: the loaded checkpoint carries '
                    f'masks, but init={self.init!r} draws new ones (its '
                    'weights are kept, its zero pattern is not); set '
                    "init='checkpoint' to keep its masks")
            masks = self._drop_near_dense(
                runner, self._initial_masks(runner, model, params))
            check_masks_keep_weights(masks, self.density, self.init)
        self.masks = SparseMasks(params, masks)
        if resumed:
            self._load_schedule_state(state)
        self._loaded_state = None
        self.masks.apply()
        self._register_step_hooks(runner)
        self._set_schedule(runner)
        self._log(runner, 'initial masks' if not resumed else 'resumed')

    def _drop_near_dense(self, runner, masks) -> Dict[str, torch.Tensor]:
        if self.dense_threshold is None:
            return masks
        dense = [
            n for n, m in masks.items()
            if int(m.count_nonzero()) >= self.dense_threshold * m.numel()
        ]
        if dense:
            runner.logger.info(
                f'SparseTrainingHook: {len(dense)} layers with initial '
                f'density >= {self.dense_threshold} made dense: {dense}')
        return OrderedDict((n, m) for n, m in masks.items() if n not in dense)

    def _set_schedule(self, runner) -> None:
        """Optimizer steps between updates at this run's total batch."""
        if not self.dynamic:
            return
        # mmengine keeps the accumulation count private
        counts = {
            getattr(w, '_accumulative_counts', 1)
            for w in self._wrappers(runner)
        }
        if len(counts) != 1:
            raise ValueError('SparseTrainingHook needs one accumulative_counts'
                             f' for all optimizers, got {sorted(counts)}')
        self._accumulation = counts.pop()
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
        self._steps_per_update = rescaled_interval(self.update_interval, base,
                                                   total)
        at = f'{base} samples per step' if base else 'this run\'s batch'
        runner.logger.info(
            f'SparseTrainingHook: update_interval {self.update_interval} '
            f'optimizer steps at {at} -> every {self._steps_per_update} '
            f'optimizer steps at {total} samples per step '
            f'({get_world_size()} GPUs x {per_gpu} x {self._accumulation} '
            f'accumulated), i.e. every '
            f'{self._steps_per_update * self._accumulation} iterations and '
            f'{self._steps_per_update * total} samples')

    def _checkpoint_masks(self, runner, params) -> Dict[str, torch.Tensor]:
        if self.mask_checkpoint is not None:
            masks = masks_from_checkpoint(self.mask_checkpoint)
            source = self.mask_checkpoint
        elif self._loaded_state is not None:
            masks = self._loaded_state['masks']
            source = 'the loaded checkpoint'
        else:
            masks = OrderedDict(
                (n, p.detach() != 0) for n, p in params.items())
            source = 'the zeros of the current weights'
        renamed = OrderedDict()
        for name, mask in masks.items():
            for old, new in self.mask_prefix_map.items():
                if name.startswith(old):
                    name = new + name[len(old):]
                    break
            renamed[name] = mask
        used = OrderedDict((n, m) for n, m in renamed.items() if n in params)
        check_masks_matched(used, renamed, params, source)
        for name, mask in used.items():
            if tuple(mask.shape) != tuple(params[name].shape):
                raise ValueError(f'mask {name} from {source} has shape '
                                 f'{tuple(mask.shape)}, the model weight has '
                                 f'{tuple(params[name].shape)}')
        skipped = len(renamed) - len(used)
        runner.logger.info(
            f'SparseTrainingHook: masks from {source}: {len(used)} used, '
            f'{skipped} not in the model/scope, '
            f'{len(params) - len(used)} sparse-scope weights without a '
            'mask stay dense')
        if used and all(bool(m.all()) for m in used.values()):
            runner.logger.warning(
                'SparseTrainingHook: init="checkpoint" found no zero '
                'weight; training dense')
        return used

    def _snip_batches(self, loader) -> list:
        """The first ``snip_batches`` batches the training loop will see.

        mmengine's InfiniteSampler iterates ONE shared index generator: a
        throw-away iterator would consume it and, once closed, end it (the
        training loop then stops with StopIteration). It draws from a fresh
        generator instead, which starts where the shared one does.
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

    def _initial_masks(self, runner, model, params) -> Dict[str, torch.Tensor]:
        shapes = sparse_shapes(params)
        names = list(params)
        total = int(
            round(self.density * sum(p.numel() for p in params.values())))
        batches = None
        if self.init == 'snip':
            # every rank draws its batches, so that data loading stays
            # in step across ranks; only rank 0 scores them.
            batches = self._snip_batches(runner.train_dataloader)
        codes = None
        if get_rank() == 0:
            masks = OrderedDict()
            if self.init == 'snip':
                scores = snip_scores(model, names, batches)
                counts = snip_counts(scores, self.density)
                for n in names:
                    if self.snip_random:
                        masks[n] = random_mask(shapes[n], counts[n],
                                               self._generator)
                    else:
                        flat = torch.zeros(params[n].numel(), dtype=torch.bool)
                        flat[topk_indices(
                            scores[n].flatten().cpu(), counts[n],
                            largest=True)] = True
                        masks[n] = flat.view(shapes[n])
            else:
                if self.init == 'erk':
                    dens = erk_densities(shapes, self.density,
                                         self.erk_power_scale)
                else:
                    dens = uniform_densities(shapes, self.density)
                counts = densities_to_counts(dens, shapes, total)
                for n in names:
                    masks[n] = random_mask(shapes[n], counts[n],
                                           self._generator)
            codes = [masks[n].to(torch.uint8) for n in names]
        codes = self._broadcast_codes(codes, params)
        return OrderedDict((n, c.bool()) for n, c in zip(names, codes))

    def _broadcast_codes(self, codes, params):
        """Broadcast rank 0's uint8 tensors (one per weight) to all ranks,
        in a single flat message."""
        if get_world_size() == 1:
            return codes
        device = next(iter(params.values())).device
        sizes = [p.numel() for p in params.values()]
        if get_rank() == 0:
            flat = torch.cat([c.flatten().to(device) for c in codes])
        else:
            flat = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
        broadcast(flat, src=0)
        return [
            c.view(p.shape)
            for c, p in zip(flat.split(sizes), params.values())
        ]

    def _register_step_hooks(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        wrappers = self._wrappers(runner)
        by_id = {id(self.masks.params[n]): n for n in self.masks.names()}
        self._optimizer_of = {}
        for wrapper in wrappers:
            optimizer = wrapper.optimizer
            names = [
                by_id[id(p)] for group in optimizer.param_groups
                for p in group['params'] if id(p) in by_id
            ]
            for n in names:
                self._optimizer_of[n] = optimizer
            if names:
                self._handles.append(
                    optimizer.register_step_post_hook(
                        self._make_step_hook(names)))
        orphans = set(self.masks.names()) - set(self._optimizer_of)
        if orphans:
            runner.logger.warning(
                'SparseTrainingHook: masked weights not in any optimizer '
                f'(kept masked, never updated): {sorted(orphans)[:5]}')

    def _make_step_hook(self, names):

        def after_optimizer_step(optimizer, args, kwargs):
            self.masks.apply(names)
            if self._capture:  # dense gradients for growth='gradient'
                for n in names:
                    grad = self.masks.params[n].grad
                    if grad is not None:
                        self._grads[n] = grad.detach().clone()

        return after_optimizer_step

    # ------------------------------------------------------------------
    # training
    def _updates_after(self, iteration: int) -> bool:
        """Whether an update follows ``iteration`` (1-based): it ends an
        optimizer step (mmengine groups accumulated iterations from
        iteration 0) whose count is a multiple of the interval."""
        if not self.dynamic or iteration % self._accumulation:
            return False
        return (iteration // self._accumulation) % self._steps_per_update == 0

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._capture = (
            self.growth == 'gradient' and self._updates_after(runner.iter + 1))

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        done = runner.iter + 1
        if (self.masks is not None and self._updates_after(done)
                and done < runner.max_iters):
            self.update(runner, done)
        self._capture = False
        self._grads = {}
        if self.masks is not None:
            hub = runner.message_hub
            hub.update_scalar('train/sparsity_density', self._density)
            hub.update_scalar('train/sparsity_explored', self._explored)
            # the schedule's p_t at this iteration (0 for fixed masks)
            rate = cosine_prune_rate(done, runner.max_iters, self.prune_rate,
                                     self.final_prune_rate)
            hub.update_scalar('train/sparsity_prune_rate',
                              rate if self.dynamic else 0.)

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._mask_ema(runner)

    def before_val_epoch(self, runner) -> None:
        self._mask_ema(runner)

    @torch.no_grad()
    def _mask_ema(self, runner) -> None:
        """Mask the averaged copies kept by EMA hooks (same names as the
        unwrapped model, under their ``module``)."""
        if self.masks is None:
            return
        for hook in runner.hooks:
            ema = getattr(hook, 'ema_model', None)
            if not isinstance(ema, torch.nn.Module):
                continue
            params = dict(getattr(ema, 'module', ema).named_parameters())
            for name in self.masks.names():
                param = params.get(name)
                if param is not None and param.shape == self.masks.params[
                        name].shape:
                    param.data.mul_(
                        self.masks.mask(name).to(param.device, param.dtype))

    @torch.no_grad()
    def update(self, runner, iteration: int) -> None:
        """One prune-and-regrow step of every masked layer."""
        rate = cosine_prune_rate(iteration, runner.max_iters, self.prune_rate,
                                 self.final_prune_rate)
        names = self.masks.names()
        params = OrderedDict((n, self.masks.params[n]) for n in names)
        growth = self.growth
        grads = {}
        if growth == 'gradient':
            grads = {n: self._grads.get(n, params[n].grad) for n in names}
            if any(g is None for g in grads.values()):
                runner.logger.warning(
                    'SparseTrainingHook: no gradient at this update '
                    '(skipped step?); regrowing at random')
                growth = 'random'
        counts = self.masks.counts()
        decided = None
        if get_rank() == 0:
            decided = [
                self.masks.prune_regrow(n, num_to_prune(counts[n], rate),
                                        growth, self._generator, grads.get(n))
                for n in names
            ]
        if get_world_size() > 1:
            # one uint8 code per weight: 0 inactive, 1 kept, 2 regrown
            codes = None if decided is None else [
                new.to(torch.uint8) + grown.to(torch.uint8)
                for new, grown in decided
            ]
            codes = self._broadcast_codes(codes, params)
            decided = [(c > 0, c == 2) for c in codes]
        self.last_update = OrderedDict()
        for n, (new, grown) in zip(names, decided):
            regrown = int(grown.count_nonzero())
            # active after = active before - pruned + regrown
            pruned = counts[n] + regrown - int(new.count_nonzero())
            self.masks.commit(n, new, grown)
            reset_optimizer_state(self._optimizer_of.get(n), params[n], grown)
            self.last_update[n] = dict(pruned=pruned, regrown=regrown)
        # each layer keeps its count (checked in tests/sparse)
        self.num_updates += 1
        self.current_prune_rate = rate
        self._log(
            runner, f'update {self.num_updates} at iter {iteration}, '
            f'prune rate {rate:.4f}', counts)

    # ------------------------------------------------------------------
    # checkpoints
    def state_dict(self) -> dict:
        state = dict(
            masks=self.masks.bool_masks('cpu'),
            explored=OrderedDict(
                (n, e.cpu()) for n, e in self.masks.explored.items()),
            dense=list(self.masks.dense),  # in scope, left dense
            num_updates=self.num_updates,
            prune_rate=self.current_prune_rate,
            rng_state=self._generator.get_state(),
            density=self.density,
            init=self.init,
            scope=self.scope,
            dynamic=self.dynamic)
        # masks and explored masks bit-packed: 1/16 of the fp32 weights;
        # encode_sparsity_state sets the version (2)
        return encode_sparsity_state(state)

    def _load_schedule_state(self, state: dict) -> None:
        self.num_updates = int(state.get('num_updates', 0))
        self.current_prune_rate = float(
            state.get('prune_rate', self.prune_rate))
        if 'rng_state' in state:
            self._generator.set_state(state['rng_state'])
        for n, explored in state.get('explored', {}).items():
            if n in self.masks.explored:
                self.masks.explored[n] = explored.to(
                    self.masks.explored[n].device, torch.bool)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.masks is not None:
            self._mask_ema(runner)
            checkpoint['sparsity'] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('sparsity')
        self._loaded_state = decode_sparsity_state(state) if isinstance(
            state, dict) and 'masks' in state else None

    # ------------------------------------------------------------------
    # logging
    def _log(self, runner, what: str, counts=None) -> None:
        stats = self.masks.stats(counts)
        self._density = stats['density']
        self._explored = stats['explored_ratio']
        model = self._unwrap(runner.model)
        numel = sum(p.numel() for p in model.parameters())
        # active = every parameter but the masked-out weights (the paper's
        # non-zero count; regrown weights are active although still 0)
        nonzero = numel - (stats['total'] - stats['active'])
        dense = stats['num_dense_layers']
        runner.logger.info(
            f'SparseTrainingHook {what}: {len(self.masks)} masked layers, '
            f'{dense} dense in scope, density {stats["density"]:.6f} '
            f'({stats["active"]}/{stats["total"]}), explored '
            f'{stats["explored_ratio"]:.4f}, model active parameters '
            f'{nonzero} of {numel}')
        if self.log_per_layer:
            runner.logger.info('\n' + format_layer_table(stats['layers']))


def format_layer_table(layers: Dict[str, tuple]) -> str:
    """``name  active/numel  density`` lines."""
    width = max([len(n) for n in layers] + [5])
    lines = [f'{"layer":<{width}}  {"active":>10}  {"numel":>10}  density']
    for name, (active, numel, density) in layers.items():
        lines.append(
            f'{name:<{width}}  {active:>10}  {numel:>10}  {density:.4f}')
    return '\n'.join(lines)
