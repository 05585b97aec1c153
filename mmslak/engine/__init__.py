"""Training-time pieces upstream lacks (registered in mmengine's root
registries, so every OpenMMLab codebase's configs can use them)."""
from .layer_decay import LayerDecayOptimWrapperConstructor, get_layer_id

__all__ = ['LayerDecayOptimWrapperConstructor', 'get_layer_id']
