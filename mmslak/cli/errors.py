"""How every command-line tool ends on an error: one ``error: ...`` line
on stderr and exit status 1, no traceback. ``MMSLAK_DEBUG=1`` in the
environment shows the traceback instead (documented in the README)."""
import contextlib
import os
import sys
from typing import Callable, List, Optional

from ..checkpoint.loading import CheckpointError, CheckpointMismatchError
from ..datasets import DatasetError

DEBUG_ENV = 'MMSLAK_DEBUG'
DEBUG_HINT = f'(set {DEBUG_ENV}=1 for the traceback)'


def debugging() -> bool:
    """True when ``MMSLAK_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, '') not in ('', '0')


def dataset_error_line(message: str, config: str = 'CONFIG') -> str:
    """One line from a :class:`~mmslak.datasets.DatasetError` message: the
    original message when a DataLoader worker re-raised it inside its
    traceback text, its lines (header, ``FILE: what`` rows) joined, and
    the config named in the ``check_dataset.py`` hint."""
    message = message.rsplit('DatasetError: ', 1)[-1]
    lines = [line.strip() for line in message.strip().splitlines()]
    line = ' '.join(line for line in lines if line)
    return line.replace('check_dataset.py CONFIG',
                        f'check_dataset.py {config}')


def error_message(error: BaseException, config: str = 'CONFIG') -> str:
    """What the tools print for ``error`` (after ``error: ``)."""
    if isinstance(error, DatasetError):
        return 'invalid dataset: ' + dataset_error_line(str(error), config)
    if isinstance(error, CheckpointMismatchError):
        return (f'{error}\npass --allow-partial-load to load only the '
                'matching weights')
    if isinstance(error, (CheckpointError, OSError, ValueError, KeyError,
                          TypeError, SyntaxError, RuntimeError)):
        text = error.args[0] if isinstance(error, KeyError) and \
            error.args else str(error)
        return str(text) or type(error).__name__
    return f'{type(error).__name__}: {error} {DEBUG_HINT}'


@contextlib.contextmanager
def exit_on_error(config: str = 'CONFIG'):
    """Turn any exception into ``error: ...`` on stderr and exit status 1
    (``config`` is named in the dataset checker hint); with
    ``MMSLAK_DEBUG=1`` the exception propagates with its traceback."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        if debugging():
            raise
        sys.exit(f'error: {error_message(e, config)}')


def run_main(main: Callable[[Optional[List[str]]], Optional[int]],
             argv: Optional[List[str]] = None) -> int:
    """``main(argv)`` (``main()`` when ``argv`` is None) under
    :func:`exit_on_error`; its return value (None counts as 0, False as 0)
    is the exit status."""
    with exit_on_error():
        result = main() if argv is None else main(argv)
    return int(result or 0)
