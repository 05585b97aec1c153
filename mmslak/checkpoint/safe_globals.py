"""The allow-list that lets mmengine checkpoints load with
``torch.load(weights_only=True)`` (the README's compatibility shim).

torch >= 2.6 unpickles checkpoints with a restricted unpickler by default;
mmengine 0.10.7 checkpoints hold, besides tensors and plain containers, the
message hub's :class:`~mmengine.logging.HistoryBuffer` objects with numpy
arrays, scalars and dtypes inside. These data types are allowed, with
numpy's own reconstructors of them (``_reconstruct``, ``scalar``).

One entry is not a data type, because the files cannot be read without it:
``HistoryBuffer.__getstate__`` stores its class-wide table of statistics
methods, and pickle (protocol 2, torch's default) writes each method
``HistoryBuffer.mean`` as ``getattr(HistoryBuffer, 'mean')``. Whatever is
registered as ``builtins.getattr`` is called by the unpickler and must
return those functions (``HistoryBuffer.__setstate__`` puts them back into
the class table, where mmengine calls them). So a stand-in is registered
under that name that returns only ``min``/``max``/``mean``/``current`` of
HistoryBuffer and refuses anything else; builtins.getattr itself is never
allowed.
"""
from typing import Any, List, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# numpy's reconstructors of arrays and scalars, as pickle finds them (the
# module moved from numpy.core to numpy._core in numpy 2).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_SCALAR = np.float64(0).__reduce__()[0]

__all__ = ['MMENGINE_SAFE_GLOBALS', 'register_safe_globals']

_STATISTICS = ('min', 'max', 'mean', 'current')


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` for unpickling, limited to HistoryBuffer's four default
    statistics methods (all mmengine's checkpoints reference)."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr({obj!r}, {name!r}) '
        'is not allowed: mmslak only allows getattr for the statistics '
        f'methods {_STATISTICS} of mmengine.logging.HistoryBuffer')


# (object, the name it is pickled under). numpy 1.x pickles its multiarray
# helpers under ``numpy.core``, numpy 2.x under ``numpy._core``: checkpoints
# written with either load.
MMENGINE_SAFE_GLOBALS: List[Tuple[Any, str]] = [
    (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
    (_history_buffer_getattr, 'builtins.getattr'),
    (np.ndarray, 'numpy.ndarray'),
    (np.dtype, 'numpy.dtype'),
    (_RECONSTRUCT, 'numpy._core.multiarray._reconstruct'),
    (_RECONSTRUCT, 'numpy.core.multiarray._reconstruct'),
    (_SCALAR, 'numpy._core.multiarray.scalar'),
    (_SCALAR, 'numpy.core.multiarray.scalar'),
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
