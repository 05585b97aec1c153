from .atomic_checkpoint_hook import AtomicCheckpointHook, CheckpointWriteError
from .checkpoint_match_hook import CheckpointMatchHook
from .random_state_hook import RandomStateHook
from .sparse_training_hook import SparseTrainingHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointWriteError', 'CheckpointMatchHook',
    'RandomStateHook', 'SparseTrainingHook'
]
