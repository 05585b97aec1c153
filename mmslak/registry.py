"""mmslak's registry scope, for configs inherited as ``mmslak::<path>``.

mmengine gives every top-level dict of a config inherited through
``pkg::`` the scope ``pkg`` (``_scope_='mmslak'``) and then imports
``mmslak.registry`` and builds from the ``mmslak`` child of each root
registry. mmslak registers its own classes upstream (the backbone in
mmpretrain's MODELS, hooks and the constructor in mmengine's), and its
configs mix mmpretrain / mmseg / mmdet types, so these children hold
nothing: a type is looked up as if the dict had no scope, i.e. in the
registry of the run's default scope (the config's ``default_scope``), then
in mmengine's.
"""
from typing import Any, Optional

import mmengine.registry as mmengine_registry
import mmpretrain.registry as mmpretrain_registry
from mmengine.registry import DefaultScope, Registry

SCOPE = 'mmslak'


def _run_scope() -> Optional[str]:
    """The newest default scope other than ours (mmengine pushes ours on
    top while building an ``_scope_='mmslak'`` dict)."""
    for instance in reversed(list(DefaultScope._instance_dict.values())):
        if instance.scope_name != SCOPE:
            return instance.scope_name
    return None


class PluginRegistry(Registry):
    """A child of an mmengine root registry that resolves types in the
    registry of the run's default scope."""

    def get(self, key: str) -> Any:
        scope = _run_scope()
        if scope is not None and '.' not in key:
            family = self._get_root_registry()._search_child(scope)
            if family is not None and family is not self:
                found = family.get(key)
                if found is not None:
                    return found
        return super().get(key)


def _child(root: Registry) -> PluginRegistry:
    return PluginRegistry(
        root.name, parent=root, scope=SCOPE, locations=['mmslak'])


# One child per root registry: mmengine's, and mmpretrain's own two roots.
MODELS = _child(mmengine_registry.MODELS)
HOOKS = _child(mmengine_registry.HOOKS)
TRANSFORMS = _child(mmengine_registry.TRANSFORMS)
DATASETS = _child(mmengine_registry.DATASETS)
DATA_SAMPLERS = _child(mmengine_registry.DATA_SAMPLERS)
OPTIMIZERS = _child(mmengine_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmengine_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    mmengine_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmengine_registry.PARAM_SCHEDULERS)
METRICS = _child(mmengine_registry.METRICS)
EVALUATOR = _child(mmengine_registry.EVALUATOR)
VISUALIZERS = _child(mmengine_registry.VISUALIZERS)
VISBACKENDS = _child(mmengine_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmengine_registry.LOG_PROCESSORS)
LOOPS = _child(mmengine_registry.LOOPS)
RUNNERS = _child(mmengine_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmengine_registry.RUNNER_CONSTRUCTORS)
MODEL_WRAPPERS = _child(mmengine_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmengine_registry.WEIGHT_INITIALIZERS)
TASK_UTILS = _child(mmengine_registry.TASK_UTILS)
FUNCTIONS = _child(mmengine_registry.FUNCTIONS)
INFERENCERS = _child(mmengine_registry.INFERENCERS)
STRATEGIES = _child(mmengine_registry.STRATEGIES)
BATCH_AUGMENTS = _child(mmpretrain_registry.BATCH_AUGMENTS)
TOKENIZER = _child(mmpretrain_registry.TOKENIZER)
