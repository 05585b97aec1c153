"""Dynamic sparse training (the paper's sparsity recipe), plain torch."""
from .checkpoint import masks_from_checkpoint
from .density import (densities_to_counts, erk_densities, random_mask,
                      snip_counts, snip_scores, uniform_densities)
from .dynamic import DynamicSparsity
from .masks import SparseMasks
from .prune_grow import (cosine_prune_rate, grow_gradient, grow_random,
                         prune_magnitude)
from .scope import is_sparse_weight, select_sparse_params
from .summary import sparsity_table

__all__ = [
    'DynamicSparsity', 'SparseMasks', 'masks_from_checkpoint',
    'is_sparse_weight', 'select_sparse_params', 'uniform_densities',
    'erk_densities', 'densities_to_counts', 'snip_scores', 'snip_counts',
    'random_mask', 'cosine_prune_rate', 'prune_magnitude', 'grow_random',
    'grow_gradient', 'sparsity_table'
]
