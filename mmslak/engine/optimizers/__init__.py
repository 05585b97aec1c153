from .layer_decay_optim_wrapper_constructor import (
    LayerDecayOptimWrapperConstructor, get_layer_id)

__all__ = ['LayerDecayOptimWrapperConstructor', 'get_layer_id']
