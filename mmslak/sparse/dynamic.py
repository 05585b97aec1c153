"""Dynamic sparse training of any ``nn.Module`` (plain torch).

:class:`DynamicSparsity` is the paper's algorithm (the reference's
``sparse_core.Masking`` and ``model_sema.ModelEma.update(model, mask)``):
masks, initial densities, the prune-rate schedule, prune and regrow, masks
applied after every optimizer step, the masked EMA, and its own
``state_dict()``. ``SparseTrainingHook`` only connects it to mmengine's
Runner, as mmengine's ``EMAHook`` connects ``averaged_model.py``.
"""
import inspect
import logging
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.dist import broadcast, get_rank, get_world_size
from mmengine.logging import print_log

from .checkpoint import decode_sparsity_state, encode_sparsity_state
from .density import (densities_to_counts, erk_densities, random_mask,
                      smallest_k_mask, snip_counts, snip_loss, snip_scores,
                      uniform_densities)
from .masks import SparseMasks
from .prune_grow import cosine_prune_rate, num_to_prune
from .scope import select_sparse_params, sparse_shapes
from .validation import (check_masks_keep_weights, check_masks_matched,
                         check_sparsity_args)

__all__ = ['DynamicSparsity']


class DynamicSparsity:
    """Masks of a model's weights at a constant density, pruned by
    magnitude and regrown every ``update_interval`` optimizer steps.

    Gradients stay dense (the reference never masks them); the weights are
    masked after every optimizer step (:meth:`attach`), an SGD
    ``momentum_buffer`` too, while AdamW's moments are never touched, as
    in the reference. A regrown weight starts at 0.

    Example (a plain PyTorch loop)::

        model = MyNet()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
                0.999))
        sparsity = DynamicSparsity(model, density=0.6, init='erk',
                                   growth='gradient', update_interval=100,
                                   total_steps=len(loader) * epochs)
        sparsity.init_masks()   # init='snip': init_masks(batches=[...])
        sparsity.attach(optimizer)  # masks weights after every step
        for epoch in range(epochs):
            for inputs, labels in loader:
                loss = F.cross_entropy(model(inputs), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                sparsity.step()  # prune and regrow when due
                new = sparsity.new_in_average(ema)  # before its update
                ema.update_parameters(model)
                sparsity.mask_average(ema, new)
        torch.save(dict(model=model.state_dict(),
                        sparsity=sparsity.state_dict()), 'ckpt.pth')

    Args:
        model (nn.Module): the (unwrapped) model; names are its
            ``named_parameters``.
        density (float): fraction of active weights over the scope, in
            (0, 1]. Defaults to 0.6 (the paper's).
        init (str): initial masks: 'snip' (global top-k of ``|w * grad|``
            on the batches given to :meth:`init_masks`, then random masks
            at those per-layer densities), 'erk', 'uniform' or
            'checkpoint' (the masks given to :meth:`init_masks`, else the
            current weights' zeros). Defaults to 'snip'.
        scope (str): 'all' (every 2-D / 4-D weight) or 'large_kernel'
            (the Kx5 / 5xK strip kernels). Defaults to 'all'.
        exclude (Sequence[str]): regular expressions of weight names kept
            dense. Defaults to ().
        dynamic (bool): prune and regrow; False keeps the masks fixed.
            Defaults to True.
        update_interval (int): optimizer steps between updates. Defaults
            to 2000.
        total_steps (int, optional): optimizer steps of the whole run: the
            prune rate decays over them and no update comes at the last.
            Defaults to None (no decay: ``prune_rate`` throughout).
        prune_rate (float): initial fraction of a layer's active weights
            pruned at an update. Defaults to 0.5.
        final_prune_rate (float): the prune rate at ``total_steps``.
            Defaults to 0.005.
        growth (str): 'random' (the paper's) or 'gradient' (RigL: the
            largest dense gradients of the step). Defaults to 'random'.
        erk_power_scale (float): exponent of the ERK scores. Defaults to 1.
        snip_random (bool): after SNIP, random masks at its per-layer
            densities (the paper's); False keeps the top-k positions.
            Defaults to True.
        dense_threshold (float, optional): a layer whose initial density is
            at least this is made dense (the reference's
            ``layer_density >= 0.99``); None keeps every mask. Defaults to
            0.99.
        seed (int): seed of the own CPU generator (masks, random growth).
            Defaults to 0.
    """

    def __init__(self,
                 model: nn.Module,
                 density: float = 0.6,
                 init: str = 'snip',
                 scope: str = 'all',
                 exclude: Sequence[str] = (),
                 dynamic: bool = True,
                 update_interval: int = 2000,
                 total_steps: Optional[int] = None,
                 prune_rate: float = 0.5,
                 final_prune_rate: float = 0.005,
                 growth: str = 'random',
                 erk_power_scale: float = 1.0,
                 snip_random: bool = True,
                 dense_threshold: Optional[float] = 0.99,
                 seed: int = 0) -> None:
        arguments = locals()  # the options by the names OPTIONS lists
        args = self.check_options(
            **{name: arguments[name]
               for name in self.OPTIONS})
        self.model = model
        self.density = args['density']
        self.init = args['init']
        self.scope = args['scope']
        self.exclude = args['exclude']
        self.dynamic = args['dynamic']
        self.update_interval = args['update_interval']
        self.total_steps = total_steps
        self.prune_rate = args['prune_rate']
        self.final_prune_rate = args['final_prune_rate']
        self.growth = args['growth']
        self.erk_power_scale = args['erk_power_scale']
        self.snip_random = args['snip_random']
        self.dense_threshold = args['dense_threshold']
        self.params = select_sparse_params(model, self.scope, self.exclude)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.masks: Optional[SparseMasks] = None
        self.num_steps = 0  # optimizer steps taken
        self.num_updates = 0
        self.current_prune_rate = self.prune_rate
        self.last_update: Dict[str, dict] = OrderedDict()
        self._grads: Dict[str, torch.Tensor] = {}
        self._handles = []

    # the arguments that configure the algorithm: all but the model, the
    # run's length and the seed (what a caller such as SparseTrainingHook
    # takes from its config)
    OPTIONS = tuple(
        name for name in inspect.signature(__init__).parameters
        if name not in ('self', 'model', 'total_steps', 'seed'))

    @classmethod
    def check_options(cls, **options) -> dict:
        """Check keyword arguments of :class:`DynamicSparsity` without a
        model, as ``__init__`` does (a hook checks its config when it is
        built): those not given take their defaults; an unknown name is a
        TypeError; an error names the argument and its valid range.

        Returns:
            dict: the given options, ``density`` as a float and ``exclude``
            as a list.
        """
        bound = inspect.signature(cls).bind(None, **options)
        bound.apply_defaults()
        checked = check_sparsity_args(bound.arguments)
        return {name: checked[name] for name in options}

    # ------------------------------------------------------------------
    # initial masks
    def init_masks(self,
                   batches: Optional[Iterable] = None,
                   masks: Optional[Dict[str, torch.Tensor]] = None,
                   loss_fn: Callable = snip_loss) -> None:
        """Draw the initial masks (``init``) and zero the inactive weights.

        Decisions are taken on rank 0 and broadcast.

        Args:
            batches (Iterable, optional): the SNIP batches (``init='snip'``),
                given to ``loss_fn(model, batch)``. Defaults to None.
            masks (dict, optional): ``init='checkpoint'``: name -> bool mask
                (names outside the scope are skipped; weights without a
                mask stay dense). Defaults to None: the weights' zeros.
            loss_fn (Callable): the SNIP loss. Defaults to the reference's
                cross-entropy (:func:`snip_loss`).
        """
        if self.init == 'checkpoint':
            drawn = self._given_masks(masks)
        else:
            drawn = self._drop_near_dense(self._drawn_masks(batches, loss_fn))
            check_masks_keep_weights(drawn, self.density, self.init)
        self.masks = SparseMasks(self.params, drawn)
        self.masks.apply()

    def _given_masks(self, masks) -> Dict[str, torch.Tensor]:
        source = 'the given masks'
        if masks is None:
            masks = OrderedDict(
                (n, p.detach() != 0) for n, p in self.params.items())
            source = 'the zeros of the current weights'
        used = OrderedDict(
            (n, m) for n, m in masks.items() if n in self.params)
        check_masks_matched(used, masks, self.params, source)
        for name, mask in used.items():
            if tuple(mask.shape) != tuple(self.params[name].shape):
                raise ValueError(f'mask {name} from {source} has shape '
                                 f'{tuple(mask.shape)}, the model weight has '
                                 f'{tuple(self.params[name].shape)}')
        _log(f'masks from {source}: {len(used)} used, '
             f'{len(masks) - len(used)} not in the model/scope, '
             f'{len(self.params) - len(used)} sparse-scope weights without a '
             'mask stay dense')
        if used and all(bool(m.all()) for m in used.values()):
            _log('init="checkpoint" found no zero weight; training dense',
                 logging.WARNING)
        return used

    def _drop_near_dense(self, masks) -> Dict[str, torch.Tensor]:
        if self.dense_threshold is None:
            return masks
        dense = [
            n for n, m in masks.items()
            if int(m.count_nonzero()) >= self.dense_threshold * m.numel()
        ]
        if dense:
            _log(f'{len(dense)} layers with initial density >= '
                 f'{self.dense_threshold} made dense: {dense}')
        return OrderedDict((n, m) for n, m in masks.items() if n not in dense)

    def _drawn_masks(self, batches, loss_fn) -> Dict[str, torch.Tensor]:
        names = list(self.params)
        codes = None
        if get_rank() == 0:
            masks = self._draw(batches, loss_fn)
            codes = [masks[n].to(torch.uint8) for n in names]
        codes = self._broadcast(codes, list(self.params.values()))
        return OrderedDict((n, c.bool()) for n, c in zip(names, codes))

    def _draw(self, batches, loss_fn) -> Dict[str, torch.Tensor]:
        shapes = sparse_shapes(self.params)
        if self.init == 'snip':
            if batches is None:
                raise ValueError("init='snip' needs the batches to score")
            scores = snip_scores(self.model, list(shapes), batches, loss_fn)
            counts = snip_counts(scores, self.density)
            if not self.snip_random:
                return OrderedDict(
                    (n, smallest_k_mask(-scores[n].cpu(), counts[n]))
                    for n in shapes)
        else:
            density_of = (
                erk_densities(shapes, self.density, self.erk_power_scale)
                if self.init == 'erk' else uniform_densities(
                    shapes, self.density))
            total = int(
                round(self.density * sum(p.numel()
                                         for p in self.params.values())))
            counts = densities_to_counts(density_of, shapes, total)
        return OrderedDict(
            (n, random_mask(shapes[n], counts[n], self.generator))
            for n in shapes)

    @staticmethod
    def _broadcast(codes, params):
        """Rank 0's uint8 tensors (one per weight of ``params``) on every
        rank, in one flat message."""
        if get_world_size() == 1:
            return codes
        sizes = [p.numel() for p in params]
        if get_rank() == 0:
            flat = torch.cat([c.flatten().to(params[0].device) for c in codes])
        else:
            flat = torch.empty(
                sum(sizes), dtype=torch.uint8, device=params[0].device)
        broadcast(flat, src=0)
        return [c.view(p.shape) for c, p in zip(flat.split(sizes), params)]

    # ------------------------------------------------------------------
    # every optimizer step
    def attach(self, optimizer: torch.optim.Optimizer) -> list:
        """Mask this optimizer's sparse weights after each of its steps.

        Also masks an SGD ``momentum_buffer`` (as the reference's
        ``apply_mask``) and, before an update with ``growth='gradient'``,
        keeps the dense gradients of the step. Returns the names.
        """
        by_id = {id(self.masks.params[n]): n for n in self.masks.names()}
        names = [
            by_id[id(p)] for group in optimizer.param_groups
            for p in group['params'] if id(p) in by_id
        ]
        if names:
            self._handles.append(
                optimizer.register_step_post_hook(
                    lambda opt, args, kwargs: self.after_optimizer_step(
                        opt, names)))
        return names

    def detach(self) -> None:
        """Remove the step hooks of :meth:`attach`."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @torch.no_grad()
    def after_optimizer_step(self, optimizer, names) -> None:
        """Mask ``names`` (and their SGD momentum); keep their gradients
        when the next :meth:`step` updates with ``growth='gradient'``."""
        self.masks.apply(names)
        for name in names:
            buf = optimizer.state.get(self.masks.params[name],
                                      {}).get('momentum_buffer')
            if torch.is_tensor(buf):
                buf.mul_(self.masks.mask(name).to(buf.dtype))
        if self.growth == 'gradient' and self.update_due(self.num_steps + 1):
            for name in names:
                grad = self.masks.params[name].grad
                if grad is not None:
                    self._grads[name] = grad.detach().clone()

    def update_due(self, step: int) -> bool:
        """Whether an update follows optimizer step ``step`` (1-based)."""
        return (self.dynamic and step % self.update_interval == 0
                and (self.total_steps is None or step < self.total_steps))

    def prune_rate_at(self, step: int) -> float:
        """The scheduled prune rate after ``step`` optimizer steps: a
        cosine from ``prune_rate`` to ``final_prune_rate`` over
        ``total_steps`` (0 when the masks are fixed)."""
        if not self.dynamic:
            return 0.
        if self.total_steps is None:
            return self.prune_rate
        return cosine_prune_rate(step, self.total_steps, self.prune_rate,
                                 self.final_prune_rate)

    def step(self) -> bool:
        """Count one optimizer step; prune and regrow when due. Returns
        whether it updated."""
        self.num_steps += 1
        due = self.update_due(self.num_steps)
        if due:
            self.update(self.prune_rate_at(self.num_steps))
        self._grads = {}
        return due

    @torch.no_grad()
    def update(self, rate: float) -> None:
        """Prune the ``ceil(rate * active)`` active weights of smallest
        magnitude of every layer and regrow as many (``growth``), rank 0
        deciding."""
        names = self.masks.names()
        growth, grads = self.growth, {}
        if growth == 'gradient':
            grads = {n: self._grads.get(n) for n in names}
            if any(g is None for g in grads.values()):
                _log(
                    'no gradient at this update (skipped step?); '
                    'regrowing at random', logging.WARNING)
                growth = 'random'
        counts = self.masks.counts()
        decided = None
        if get_rank() == 0:
            decided = [
                self.masks.prune_regrow(n, num_to_prune(counts[n], rate),
                                        growth, self.generator, grads.get(n))
                for n in names
            ]
        if get_world_size() > 1:
            # one uint8 code per weight: 0 inactive, 1 kept, 2 regrown
            codes = None if decided is None else [
                new.to(torch.uint8) + grown.to(torch.uint8)
                for new, grown in decided
            ]
            codes = self._broadcast(codes,
                                    [self.masks.params[n] for n in names])
            decided = [(c > 0, c == 2) for c in codes]
        self.last_update = OrderedDict()
        for n, (new, grown) in zip(names, decided):
            regrown = int(grown.count_nonzero())
            pruned = counts[n] + regrown - int(new.count_nonzero())
            self.masks.commit(n, new, grown)
            self.last_update[n] = dict(pruned=pruned, regrown=regrown)
        self.num_updates += 1
        self.current_prune_rate = rate

    # ------------------------------------------------------------------
    # the averaged (EMA) model
    def _averaged_params(self, averaged: nn.Module) -> Dict[str, nn.Parameter]:
        """The masked weights' twins in ``averaged`` (an mmengine or torch
        averaged model keeps the copy under ``module``)."""
        params = dict(getattr(averaged, 'module', averaged).named_parameters())
        return OrderedDict(
            (n, params[n]) for n in self.masks.names()
            if n in params and params[n].shape == self.masks.params[n].shape)

    @torch.no_grad()
    def new_in_average(self, averaged: nn.Module) -> Dict[str, torch.Tensor]:
        """Active positions where ``averaged`` is exactly 0 (the
        reference's newly active weights); call it before the average's
        update, and give the result to :meth:`mask_average`."""
        return OrderedDict((n, (p == 0) & self.masks.mask(n).to(p.device))
                           for n, p in self._averaged_params(averaged).items())

    @torch.no_grad()
    def mask_average(self,
                     averaged: nn.Module,
                     new: Optional[Dict[str, torch.Tensor]] = None) -> None:
        """After the average's update: zero its inactive weights, and set
        the ``new`` positions (:meth:`new_in_average`) to the model's
        current value instead of a partial average from zero, as the
        reference's ``ModelEma.update(model, mask)``."""
        for name, param in self._averaged_params(averaged).items():
            param.mul_(self.masks.mask(name).to(param.device, param.dtype))
            if new and name in new:
                source = self.masks.params[name].detach().to(param.device)
                param.copy_(torch.where(new[name], source, param))

    # ------------------------------------------------------------------
    # state
    def state_dict(self) -> dict:
        """Masks, ever-active masks, schedule and generator state
        (bit-packed masks, format version 2)."""
        return encode_sparsity_state(
            dict(
                masks=self.masks.bool_masks('cpu'),
                explored=OrderedDict(
                    (n, e.cpu()) for n, e in self.masks.explored.items()),
                dense=list(self.masks.dense),  # in scope, left dense
                num_steps=self.num_steps,
                num_updates=self.num_updates,
                prune_rate=self.current_prune_rate,
                rng_state=self.generator.get_state(),
                density=self.density,
                init=self.init,
                scope=self.scope,
                dynamic=self.dynamic))

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (or a version-1 state with bool
        masks) and apply the masks."""
        state = decode_sparsity_state(state)
        # a KeyError naming masks outside the scope / exclude
        self.masks = SparseMasks(self.params, state['masks'])
        self.num_steps = int(state.get('num_steps', 0))
        self.num_updates = int(state.get('num_updates', 0))
        self.current_prune_rate = float(
            state.get('prune_rate', self.prune_rate))
        if 'rng_state' in state:
            self.generator.set_state(state['rng_state'])
        for n, explored in state['explored'].items():  # decoded: always
            if n in self.masks.explored:
                self.masks.explored[n] = explored.to(
                    self.masks.explored[n].device, torch.bool)
        self.masks.apply()


def _log(msg: str, level: int = logging.INFO) -> None:
    print_log(f'DynamicSparsity: {msg}', logger='current', level=level)
