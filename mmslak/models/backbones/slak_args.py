"""Range checks of the SLaK backbone's size arguments.

Out of range, they otherwise pass silently (``drop_path_rate`` < 0 acts as
0, >= 1 gives NaN outputs, a zero depth gives an empty stage) or fail deep
in torch (a stage with no channels: an error about conv groups).
"""
import numbers
from typing import List, Sequence

__all__ = ['check_slak_args']


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_slak_args(depths: Sequence, channels: Sequence, width_factor,
                    drop_path_rate, in_channels) -> List[int]:
    """Validate the arguments; return the stage widths
    ``int(c * width_factor)`` for ``c`` in the arch's ``channels``. Every
    error names the argument and its valid range."""
    for name, values in (('depths', depths), ('channels', channels)):
        bad = [v for v in values if not _is_int(v) or v < 1]
        if bad:
            raise ValueError(f'arch {name} must be positive integers (>= 1), '
                             f'got {list(values)}')
    if not _is_int(in_channels) or in_channels < 1:
        raise ValueError('in_channels must be a positive integer, got '
                         f'{in_channels!r}')
    if not _is_real(drop_path_rate) or not 0 <= drop_path_rate < 1:
        raise ValueError('drop_path_rate must be a number in [0, 1), got '
                         f'{drop_path_rate!r}')
    if not _is_real(width_factor) or width_factor <= 0:
        raise ValueError('width_factor must be a number > 0, got '
                         f'{width_factor!r}')
    widths = [int(c * width_factor) for c in channels]
    if min(widths) < 1:
        need = max(1 / c for c in channels)
        raise ValueError(
            f'width_factor {width_factor} leaves a stage without channels '
            f'(int(channels * width_factor) = {widths} for channels '
            f'{list(channels)}); valid: width_factor >= {need:g}')
    return widths
