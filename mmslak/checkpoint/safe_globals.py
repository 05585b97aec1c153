"""The allow-list that lets mmengine checkpoints load with
``torch.load(weights_only=True)``.

torch >= 2.6 unpickles checkpoints with a restricted unpickler by default;
mmengine 0.10.7 checkpoints hold, besides tensors and plain containers, the
message hub's :class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays
and scalars inside, and the buffer's statistics methods, which pickle as
``getattr(HistoryBuffer, 'mean')``). We allow exactly those types, found by
listing the globals of checkpoints saved by a Runner with message hub,
optimizer, parameter schedulers, EMA and sparse-training state
(``torch.serialization.get_unsafe_globals_in_checkpoint``). ``getattr`` is
not allowed in general: a restricted stand-in is registered under its name
that only returns HistoryBuffer's registered statistics methods.
"""
from typing import Any, List, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

__all__ = ['MMENGINE_SAFE_GLOBALS', 'register_safe_globals']


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` for unpickling, limited to HistoryBuffer's statistics
    methods (``HistoryBuffer._statistics_methods``)."""
    if obj is HistoryBuffer and isinstance(
            name, str) and (name in HistoryBuffer._statistics_methods
                            or name in ('min', 'max', 'mean', 'current')):
        return getattr(obj, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr({obj!r}, {name!r}) '
        'is not allowed: mmslak only allows getattr for the statistics '
        'methods of mmengine.logging.HistoryBuffer')


# (object, the name it is pickled under). numpy 1.x pickles its multiarray
# helpers under ``numpy.core``, numpy 2.x under ``numpy._core``: checkpoints
# written with either load.
MMENGINE_SAFE_GLOBALS: List[Tuple[Any, str]] = [
    (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
    (_history_buffer_getattr, 'builtins.getattr'),
    (np.ndarray, 'numpy.ndarray'),
    (np.dtype, 'numpy.dtype'),
    (_multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
    (_multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
    (_multiarray.scalar, 'numpy._core.multiarray.scalar'),
    (_multiarray.scalar, 'numpy.core.multiarray.scalar'),
]
# Unpickling a numpy dtype BUILDs an instance of its dtype class (e.g.
# numpy.dtypes.Float64DType); the history buffers hold float64 values and
# int64 counts, and logged values may be any numeric scalar type.
for _name in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
              'uint32', 'uint64', 'float16', 'float32', 'float64'):
    _cls = type(np.dtype(_name))
    MMENGINE_SAFE_GLOBALS.append((_cls, f'numpy.dtypes.{_cls.__name__}'))


def register_safe_globals() -> None:
    """Add :data:`MMENGINE_SAFE_GLOBALS` to torch's weights-only allow-list
    (idempotent: torch keeps them in a set)."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
