"""The one deploy walker: switch every re-parameterisable module."""
import torch.nn as nn


def switch_to_deploy(model: nn.Module) -> int:
    """Call ``switch_to_deploy()`` on every top-level submodule having it
    (SLaK, RepLKNet, RepVGG, ...). Returns how many were switched."""
    switched = 0
    pending = [model]
    while pending:
        module = pending.pop()
        if hasattr(module, 'switch_to_deploy') and callable(
                module.switch_to_deploy):
            module.switch_to_deploy()
            switched += 1
            continue  # it switches its own children
        pending.extend(module.children())
    return switched
