from .checkpoint_match_hook import CheckpointMatchHook
from .sparse_training_hook import SparseTrainingHook

__all__ = ['CheckpointMatchHook', 'SparseTrainingHook']
