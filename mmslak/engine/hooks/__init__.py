from .atomic_checkpoint_hook import AtomicCheckpointHook
from .checkpoint_match_hook import CheckpointMatchHook
from .sparse_training_hook import SparseTrainingHook

__all__ = ['AtomicCheckpointHook', 'CheckpointMatchHook', 'SparseTrainingHook']
