"""A hook that turns mmengine's lenient ``load_from`` into a checked one."""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmslak.checkpoint.loading import (check_state_dict, compare_state_dicts,
                                       get_state_dict)

__all__ = ['CheckpointMatchHook']


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Fail loudly when a loaded checkpoint does not cover the model.

    ``Runner.load_checkpoint`` (``load_from``) loads with ``strict=False``
    and only logs what did not match, so a checkpoint of another
    architecture silently trains from scratch. This hook runs at
    ``after_load_checkpoint``, before the weights are copied, and raises
    :class:`~mmslak.checkpoint.CheckpointMismatchError` listing the keys when
    any shape disagrees, when keys under ``prefixes`` (the backbone by
    default) are missing, or, with ``strict=True``, on any missing or
    unexpected key.

    Example::

        custom_hooks = [dict(type='CheckpointMatchHook')]
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 prefixes: Sequence[str] = ('backbone.', ),
                 strict: bool = False) -> None:
        self.prefixes = tuple(prefixes)
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state_dict = get_state_dict(checkpoint)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        reference = model.state_dict()
        if self.strict:
            allow_missing, allow_unexpected = (), ()
        else:
            missing, unexpected, _ = compare_state_dicts(state_dict, reference)
            allow_missing = tuple(
                {k
                 for k in missing if not k.startswith(self.prefixes)})
            allow_unexpected = tuple(unexpected)
        check_state_dict(
            state_dict,
            reference,
            source='the loaded checkpoint',
            target=type(model).__name__,
            allow_missing=allow_missing,
            allow_unexpected=allow_unexpected)
