"""Progress display of the long command-line tools (ERF over many images,
checkpoint conversions): mmengine's ``ProgressBar`` on stderr, which keeps
stdout for the tools' results. Silent when stderr is not a terminal (logs,
CI, pipes) or when the tool's ``--quiet`` flag is given, as OpenMMLab tools
print bars only to a person watching."""
import argparse
import sys
from typing import Optional, TextIO

from mmengine.utils import ProgressBar

__all__ = ['add_quiet_flag', 'progress_bar', 'SilentProgressBar']


class SilentProgressBar:
    """``ProgressBar``'s interface, printing nothing."""

    def __init__(self, task_num: int = 0) -> None:
        self.task_num = task_num
        self.completed = 0

    def update(self, num_tasks: int = 1) -> None:
        self.completed += num_tasks

    def finish(self) -> None:
        pass


class _EndingProgressBar(ProgressBar):
    """mmengine's bar plus ``finish()``, which ends its line (mmengine's
    ``track_*`` helpers do that themselves, for a bar over an iterable;
    ours are updated by hand)."""

    def __init__(self, task_num: int, file: TextIO) -> None:
        super().__init__(task_num, file=file)
        self._finished = False

    def finish(self) -> None:
        """End the bar's line (once; later calls do nothing)."""
        if not self._finished:
            self._finished = True
            self.file.write('\n')
            self.file.flush()


def progress_bar(task_num: int,
                 quiet: bool = False,
                 file: Optional[TextIO] = None):
    """A bar of ``task_num`` steps (``.update(n)``, then ``.finish()``) on
    ``file`` (default: the current ``sys.stderr``) if it is a terminal and
    not ``quiet``; else a :class:`SilentProgressBar`."""
    file = sys.stderr if file is None else file
    isatty = getattr(file, 'isatty', None)
    if quiet or task_num <= 0 or isatty is None or not isatty():
        return SilentProgressBar(task_num)
    return _EndingProgressBar(task_num, file=file)


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--quiet`` flag of the tools showing a progress bar."""
    parser.add_argument(
        '--quiet',
        action='store_true',
        help='no progress bar (there is none either when stderr is not a '
        'terminal)')
