"""Stop (or skip the step) when the training loss is NaN or infinite."""
import os.path as osp
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

__all__ = ['FiniteLossHook', 'NonFiniteLossError']

ACTIONS = ('stop', 'skip')


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Check the loss of every iteration before its backward pass.

    mmengine steps the optimizer with whatever loss the model returns, so
    one NaN silently poisons the weights, the EMA and every later
    checkpoint (mmdet's ``CheckInvalidLossHook`` checks after the step,
    when the weights are already lost). This hook wraps the optimizer
    wrapper's ``update_params`` of this run: a non-finite loss either
    raises :class:`NonFiniteLossError` (``action='stop'``) naming the
    iteration, every loss term and the last good checkpoint, before any
    weight changed; or (``action='skip'``) skips backward and step with a
    warning, as AMP skips an overflowing step.

    Args:
        action: 'stop' or 'skip'.
        max_skips: with 'skip', stop anyway after this many consecutive
            skipped iterations.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'stop', max_skips: int = 10) -> None:
        if action not in ACTIONS:
            raise ValueError(
                f'action must be one of {ACTIONS}, got {action!r}')
        self.action = action
        self.max_skips = int(max_skips)
        self._skips = 0
        self._terms: Optional[dict] = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        parse_losses = model.parse_losses
        wrapper = runner.optim_wrapper
        update_params = wrapper.update_params

        def recorded_parse_losses(losses):  # keeps the terms for the message
            loss, log_vars = parse_losses(losses)
            self._terms = log_vars
            return loss, log_vars

        def checked_update_params(loss, *args, **kwargs):
            if torch.isfinite(loss).all():
                self._skips = 0
                return update_params(loss, *args, **kwargs)
            self._non_finite(runner, loss)

        model.parse_losses = recorded_parse_losses
        wrapper.update_params = checked_update_params

    def _non_finite(self, runner, loss) -> None:
        terms = ', '.join(f'{k}={float(v):.6g}'
                          for k, v in (self._terms or {}).items())
        where = (f'loss {float(loss)} at iteration {runner.iter + 1} '
                 f'(epoch {runner.epoch + 1}); loss terms: {terms or "?"}')
        self._skips += 1
        if self.action == 'skip' and self._skips <= self.max_skips:
            runner.optim_wrapper.zero_grad()
            runner.logger.warning(f'FiniteLossHook: skipped the step: {where}')
            return
        if self.action == 'skip':
            where += f'; {self._skips} iterations in a row'
        raise NonFiniteLossError(f'non-finite {where}. Last good checkpoint: '
                                 f'{self._last_checkpoint(runner)}')

    @staticmethod
    def _last_checkpoint(runner) -> str:
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(pointer):
            with open(pointer) as f:
                return f.read().strip() or 'none (empty last_checkpoint)'
        return 'none saved yet in ' + runner.work_dir
