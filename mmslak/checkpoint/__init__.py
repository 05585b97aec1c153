"""Checkpoint reading (one weights-only reader), conversion, atomic writes.

Importing it (``import mmslak`` does) changes two things of mmengine's, both
documented in the README: the data types mmengine's own checkpoints need are
added to torch's weights-only allow-list (:mod:`.safe_globals`), and every
remote scheme (``http(s)://``, ``torchvision://``, ...) is read weights-only
(:mod:`.remote`, a security fix). mmengine's local file backend and local
checkpoint loader are left as they are.
"""
from .atomic import AtomicLocalBackend, atomic_write_bytes
from .converters import (ConversionReport, mmdet2x_to_mmdet3x,
                         mmpretrain_to_slak, mmseg0x_to_mmseg1x,
                         save_converted, slak_to_mmpretrain,
                         trained_or_ema_weights)
from .loading import (CheckpointError, CheckpointMismatchError,
                      CorruptCheckpointError, UnsafeCheckpointError,
                      check_state_dict, compare_state_dicts, get_state_dict,
                      load_checkpoint_file, load_weights, read_checkpoint)
from .pretrained_init import PretrainedStrictInit
from .remote import REMOTE_PREFIXES, register_remote_loaders
from .safe_globals import MMENGINE_SAFE_GLOBALS, register_safe_globals

register_safe_globals()
register_remote_loaders()

__all__ = [
    'AtomicLocalBackend', 'atomic_write_bytes', 'ConversionReport',
    'mmdet2x_to_mmdet3x', 'mmpretrain_to_slak', 'mmseg0x_to_mmseg1x',
    'save_converted', 'slak_to_mmpretrain', 'CheckpointError',
    'CheckpointMismatchError', 'CorruptCheckpointError',
    'UnsafeCheckpointError', 'check_state_dict', 'compare_state_dicts',
    'get_state_dict', 'load_checkpoint_file', 'load_weights',
    'read_checkpoint', 'MMENGINE_SAFE_GLOBALS', 'register_safe_globals',
    'REMOTE_PREFIXES', 'register_remote_loaders', 'PretrainedStrictInit',
    'trained_or_ema_weights'
]
