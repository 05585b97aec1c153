"""A fork server for the fault-injection test: imports torch, mmengine,
mmpretrain and THIS checkout's mmslak once (printing ``mmslak.__file__``),
then forks one child per request that runs ``tools/train.py`` as
``__main__``. Importing takes tens of seconds on a loaded CI machine;
forking takes milliseconds, which is what makes 20+ kills affordable.

Protocol (one JSON line per request on stdin)::

    {"argv": [...], "log": PATH, "kill": null | {"event": E, "at": N}}

answered by ``PID <pid>`` when the child starts and ``EXIT <pid> <code>``
when it ends (``-9`` when SIGKILLed). With ``kill``, the child SIGKILLs
itself at the N-th occurrence of event E (see :data:`EVENTS`)."""
import json
import os
import os.path as osp
import runpy
import signal
import sys
import traceback

os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch  # noqa: E402

torch.set_num_threads(1)
import mmpretrain.models  # noqa: E402,F401
from mmengine.runner import Runner  # noqa: E402,F401

import mmslak  # noqa: E402

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_on_call(owner, name: str, at: int, before: bool = True) -> None:
    """Replace ``owner.name`` so that its ``at``-th call SIGKILLs the
    process (before running, or after it returned)."""
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if before and calls[0] == at:
            _die()
        out = real(*args, **kwargs)
        if not before and calls[0] == at:
            _die()
        return out

    setattr(owner, name, wrapper)


def _arm(kill: dict) -> None:
    """Where each event kills (this process only; it is a throw-away fork).
    """
    from mmengine.optim import OptimWrapper
    from mmengine.runner.loops import ValLoop

    from mmslak.sparse.masks import SparseMasks
    event, at = kill['event'], int(kill['at'])
    if event == 'step':  # mid-iteration: after backward, before the step
        _kill_on_call(OptimWrapper, 'step', at)
    elif event == 'fsync':  # mid checkpoint write: temp file written,
        _kill_on_call(os, 'fsync', at)  # not renamed (or dir not synced)
    elif event == 'replace':  # checkpoint/pointer renamed into place
        _kill_on_call(os, 'replace', at, before=False)
    elif event == 'commit':  # mid prune/regrow: some layers updated
        _kill_on_call(SparseMasks, 'commit', at)
    elif event == 'val':  # during validation
        _kill_on_call(ValLoop, 'run_iter', at)
    else:
        raise ValueError(f'unknown kill event {event!r}')


EVENTS = ('step', 'fsync', 'replace', 'commit', 'val')


def _child(request: dict) -> None:
    fd = os.open(request['log'], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    print('MMSLAK_IMPORTED_FROM=' + mmslak.__file__, flush=True)
    try:
        if request.get('kill'):
            _arm(request['kill'])
        sys.argv = [osp.join(REPO, 'tools', 'train.py')] + request['argv']
        runpy.run_path(sys.argv[0], run_name='__main__')
        code = 0
    except BaseException:  # noqa: B902  (report, then leave the fork)
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main():
    print('READY ' + mmslak.__file__, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(f'PID {pid}', flush=True)
        _, status = os.waitpid(pid, 0)
        code = (-os.WTERMSIG(status)
                if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        print(f'EXIT {pid} {code}', flush=True)


if __name__ == '__main__':
    main()
