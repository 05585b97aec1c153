"""Dynamic sparse training (the paper's sparsity recipe)."""
from .checkpoint import masks_from_checkpoint
from .density import (densities_to_counts, erk_densities, random_mask,
                      snip_counts, snip_scores, uniform_densities)
from .masks import SparseMasks
from .prune_grow import (cosine_prune_rate, grow_gradient, grow_random,
                         prune_magnitude, reset_optimizer_state)
from .scope import select_sparse_params
from .summary import sparsity_table

__all__ = [
    'SparseMasks', 'masks_from_checkpoint', 'select_sparse_params',
    'uniform_densities', 'erk_densities', 'densities_to_counts', 'snip_scores',
    'snip_counts', 'random_mask', 'cosine_prune_rate', 'prune_magnitude',
    'grow_random', 'grow_gradient', 'reset_optimizer_state', 'sparsity_table'
]
