"""Kill training at seeded random moments, resume, and get the uninterrupted
run's result bit for bit.

A tiny classifier trained with the real ImageNet recipe (RandAugment,
RandomErasing, Mixup/CutMix, drop path, EMA, SNIP + dynamic sparsity; see
``real_recipe.py``), iteration-based and epoch-based, through this
checkout's ``tools/train.py``. The training process is SIGKILLed mid
optimizer step, mid checkpoint write (temporary file written, not yet
renamed), right after a rename, mid prune/regrow (some layers updated),
during validation or after a random delay; each time ``--resume`` (auto
from the work dir) carries on, until the run completes. Its final
checkpoint (weights, EMA, optimizer state, lr schedulers, masks, explored
masks, the sparse schedule, random states) must equal the uninterrupted
run's.

``MMSLAK_FAULT_SEED`` (default 2026) and ``MMSLAK_FAULT_KILLS`` (kills per
loop kind, default 10) replay or lengthen the run; the seed and every kill
point are printed.
"""
import json
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import threading

import pytest
import real_recipe as rr
from child_process import assert_imported_this_checkout

pytestmark = pytest.mark.slow

HERE = osp.dirname(osp.abspath(__file__))
KINDS = ('step', 'fsync', 'replace', 'commit', 'val', 'time')


def _remaining(event: str, done: int, by_epoch: bool) -> int:
    """Occurrences of ``event`` certain to come in a run resumed after
    ``done`` iterations (or epochs): 12 iterations, a checkpoint every 2
    (2 fsyncs and 2 renames: file, pointer), validation (2 batches) every
    4, prune/regrow of 10 layers every 2 but the last; or 3 epochs of 3
    iterations, checkpoint and validation each epoch."""
    if by_epoch:
        iters, ckpts, vals = range(3 * done + 1, 10), 3 - done, 3 - done
    else:
        iters = range(done + 1, 13)
        ckpts = len([i for i in iters if i % 2 == 0])
        vals = len([i for i in iters if i % 4 == 0])
    updates = len([i for i in iters if i % 2 == 0 and i < iters.stop - 1])
    return dict(
        step=len(iters),
        fsync=2 * ckpts,
        replace=2 * ckpts,
        commit=10 * updates,
        val=2 * vals)[event]


class Zygote:
    """``train_zygote.py``: imports once, forks a training child per run."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([
            sys.executable, '-W', 'ignore',
            osp.join(HERE, 'train_zygote.py')
        ],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     env=rr.child_env(),
                                     text=True)
        ready = self.proc.stdout.readline().split()
        assert ready[:1] == ['READY'], ready
        assert_imported_this_checkout(f'MMSLAK_IMPORTED_FROM={ready[1]}')

    def run(self, argv, log, kill=None, timeout=300) -> int:
        """Exit code of one training child (-9: killed)."""
        event = None if kill is None or kill[0] == 'time' else dict(
            event=kill[0], at=kill[1])
        self.proc.stdin.write(
            json.dumps(dict(argv=argv, log=log, kill=event)) + '\n')
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline().split()[1])
        delay = kill[1] if kill and kill[0] == 'time' else timeout
        timer = threading.Timer(delay, os.kill, (pid, signal.SIGKILL))
        timer.start()
        try:
            words = self.proc.stdout.readline().split()
        finally:
            timer.cancel()
        assert words[:2] == ['EXIT', str(pid)], words
        return int(words[2])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope='module')
def zygote():
    z = Zygote()
    yield z
    z.close()


def _done(work_dir: str) -> int:
    """Iterations (epochs) saved in the checkpoint auto-resume will use."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return 0
    name = osp.basename(open(pointer).read().strip())
    return int(name.split('_')[1].split('.')[0])


def _kill_point(rng: random.Random, by_epoch: bool, done: int):
    """A seeded (event, n-th occurrence) sure to happen, or a delay; None
    once the run's last checkpoint is saved (the round then finishes)."""
    kinds = [k for k in KINDS if k != 'time' and _remaining(k, done, by_epoch)]
    if not kinds:
        return None
    event = rng.choice(kinds + ['time'])
    if event == 'time':  # mostly during start-up (runner, model, data)
        return event, round(rng.uniform(0.2, 1.5), 2)
    return event, rng.randint(1, _remaining(event, done, by_epoch))


def _train_with_kills(zygote, config, work_dir, by_epoch, rng, kills):
    """Run until complete, killing at ``kills`` seeded moments; return the
    kill points that actually killed."""
    os.makedirs(work_dir)
    log = osp.join(work_dir, 'children.log')
    argv = [config, '--work-dir', work_dir, '--resume']
    killed = []
    for _ in range(kills + 20):
        point = None
        if len(killed) < kills:
            point = _kill_point(rng, by_epoch, _done(work_dir))
        code = zygote.run(argv, log, point)
        print(f'  kill point {point}: exit {code}', flush=True)
        if code == 0:
            return killed, log
        assert code == -signal.SIGKILL, open(log).read()[-3000:]
        killed.append(point)
    raise AssertionError(f'no complete run after {killed}')


@pytest.mark.parametrize('by_epoch', [False, True], ids=['iter', 'epoch'])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, zygote, by_epoch):
    seed = int(os.environ.get('MMSLAK_FAULT_SEED', 2026))
    kills = int(os.environ.get('MMSLAK_FAULT_KILLS', 10))
    print(f'\nfault injection: MMSLAK_FAULT_SEED={seed} '
          f'MMSLAK_FAULT_KILLS={kills} by_epoch={by_epoch}')
    rr.make_dataset(str(tmp_path / 'data'))
    config = rr.write_config(
        str(tmp_path / 'cfg.py'),
        str(tmp_path / 'data'),
        by_epoch=by_epoch,
        length=3 if by_epoch else 12,
        interval=1 if by_epoch else 2,
        val=1 if by_epoch else 4)
    final = 'epoch_3.pth' if by_epoch else 'iter_12.pth'

    ref_dir = str(tmp_path / 'uninterrupted')
    os.makedirs(ref_dir)
    ref_log = osp.join(ref_dir, 'child.log')
    assert zygote.run([config, '--work-dir', ref_dir], ref_log) == 0
    assert_imported_this_checkout(open(ref_log).read())

    reference = rr.final_state(osp.join(ref_dir, final))
    assert rr.tensor_count(reference) > 200
    rng = random.Random(f'{seed}-{by_epoch}')
    killed = []
    rounds = 0
    while len(killed) < kills:  # a round ends when its run completes
        work = str(tmp_path / f'round{rounds}')
        rounds += 1
        more, log = _train_with_kills(zygote, config, work, by_epoch, rng,
                                      kills - len(killed))
        print(f'  round of {len(more)} kills: {more}', flush=True)
        _check_round(work, log, final, reference, more)
        killed += more
    print(f'  {len(killed)} kills, all resumed exactly: {killed}')


def _check_round(work, log, final, reference, killed):
    text = open(log).read()
    assert_imported_this_checkout(text)
    resumes = text.count('resumed epoch: ')  # mmengine's line
    if killed and resumes:  # (a kill before the first pointer: no resume)
        assert text.count('RandomStateHook: random states of rank 0 '
                          'restored') == resumes
    if any(e == 'fsync' and n % 2 for e, n in killed):  # temp file fsync
        assert 'removed the temporary file' in text
    result = rr.final_state(osp.join(work, final))
    assert rr.differences(result, reference) == []
    assert rr.differences(reference, result) == []
    # nothing half-written is left, and the pointer names the final file
    leftovers = [f for f in os.listdir(work) if f.endswith('.tmp')]
    assert leftovers == [], leftovers
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, final)
