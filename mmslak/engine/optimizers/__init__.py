from .layer_decay_optim_wrapper_constructor import (
    LayerDecayOptimWrapperConstructor, stage_wise_layer_id)

__all__ = ['LayerDecayOptimWrapperConstructor', 'stage_wise_layer_id']
