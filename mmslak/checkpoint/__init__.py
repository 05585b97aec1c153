"""Checkpoint loading, saving and conversion.

Importing it (``import mmslak`` does) registers the weights-only allow-list
for mmengine checkpoints, routes mmengine's local checkpoint loading through
:func:`load_checkpoint_file` (clear errors), reads every remote scheme
(``http(s)://``, ``torchvision://``, ...) weights-only (:mod:`.remote`) and
makes local checkpoint writes atomic.
"""
from .atomic import (AtomicLocalBackend, atomic_write_bytes,
                     use_atomic_local_backend)
from .converters import (ConversionReport, build_model_from_config,
                         build_slak_classifier, mmdet2x_to_mmdet3x,
                         mmpretrain_to_slak, mmseg0x_to_mmseg1x,
                         save_converted, slak_to_mmpretrain,
                         verify_against_model)
from .loading import (CheckpointError, CheckpointMismatchError,
                      CorruptCheckpointError, UnsafeCheckpointError,
                      check_state_dict, compare_state_dicts, get_state_dict,
                      load_checkpoint_file, load_pretrained_backbone,
                      load_state_dict_checked, read_checkpoint,
                      register_checked_local_loader)
from .remote import REMOTE_PREFIXES, register_remote_loaders
from .safe_globals import MMENGINE_SAFE_GLOBALS, register_safe_globals

register_safe_globals()
register_checked_local_loader()
register_remote_loaders()
use_atomic_local_backend()

__all__ = [
    'AtomicLocalBackend', 'atomic_write_bytes', 'use_atomic_local_backend',
    'ConversionReport', 'build_model_from_config', 'build_slak_classifier',
    'mmdet2x_to_mmdet3x', 'mmpretrain_to_slak', 'mmseg0x_to_mmseg1x',
    'save_converted', 'slak_to_mmpretrain', 'verify_against_model',
    'CheckpointError', 'CheckpointMismatchError', 'CorruptCheckpointError',
    'UnsafeCheckpointError', 'check_state_dict', 'compare_state_dicts',
    'get_state_dict', 'load_checkpoint_file', 'load_pretrained_backbone',
    'register_checked_local_loader', 'read_checkpoint',
    'load_state_dict_checked', 'MMENGINE_SAFE_GLOBALS',
    'register_safe_globals', 'REMOTE_PREFIXES', 'register_remote_loaders'
]
