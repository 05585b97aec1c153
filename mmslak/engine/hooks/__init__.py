from .atomic_checkpoint_hook import AtomicCheckpointHook, CheckpointWriteError
from .checkpoint_match_hook import CheckpointMatchHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .random_state_hook import RandomStateHook
from .sparse_training_hook import SparseTrainingHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointWriteError', 'CheckpointMatchHook',
    'FiniteLossHook', 'NonFiniteLossError', 'RandomStateHook',
    'SparseTrainingHook'
]
