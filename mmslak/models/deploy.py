"""The one deploy walker: switch every re-parameterisable module."""
import torch.nn as nn


def switch_to_deploy(model: nn.Module) -> int:
    """Call ``switch_to_deploy()`` on every outermost submodule having it
    (SLaK, RepLKNet, RepVGG, ...) that is not in deploy form yet (its
    ``deploy`` attribute is false or absent). Returns how many were switched:
    0 for a model built with ``deploy=True``."""
    switched = 0
    pending = [model]
    while pending:
        module = pending.pop()
        if callable(getattr(module, 'switch_to_deploy', None)):
            if not getattr(module, 'deploy', False):
                module.switch_to_deploy()
                switched += 1
            continue  # it switches its own children
        pending.extend(module.children())
    return switched
