"""``bash tools/dist_train.sh CONFIG 2`` and ``tools/dist_test.sh`` end to
end on the CPU (2 processes, gloo) on the toy ADE20K: both ranks hold the
same sparse masks and weights, and the metric is reported once; a rank
killed mid-run is restarted by torchrun (MAX_RESTARTS) and the resumed run
ends equal to the uninterrupted one (the same run that the first test
checks, so the two tests train three times, not four)."""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from mmslak.checkpoint import load_checkpoint_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
pytestmark = [
    pytest.mark.slow, pytest.mark.multi_rank,
    pytest.mark.skipif(
        torch.cuda.is_available(), reason='tests the CPU (gloo) path')
]

# SNIP masks (scored on rank 0's batch: each rank draws other images) and
# a different sparsity seed per rank (torchrun's RANK): only the hook's
# broadcasts can make the ranks' masks agree. A mask update every
# iteration (below), a checkpoint every 2 (the preemption test kills rank 1
# after the first), each rank's masks and weights dumped at the end
# (tests/integration/dist_probe.py).
CONFIG = """
_base_ = [{base!r}]
custom_imports = dict(imports=['mmslak', 'mmslak.datasets', 'dist_probe'],
                      allow_failed_imports=False)
custom_hooks = [
    dict(type='SparseTrainingHook', density=0.5, init='snip', scope='all',
         exclude=[r'^(?!backbone\\.)'], update_interval=1, prune_rate=0.5,
         seed=100 + {{{{'$RANK:0'}}}}),
    dict(type='RandomStateHook'),
    dict(type='DumpRankStateHook'),
]
train_cfg = dict(max_iters=4, val_interval=4)
train_dataloader = dict(batch_size=2)
# the sparse interval counts steps of 4 samples (2 ranks x 2): a mask
# update every iteration (at the config's 16 it would wait 4 iterations)
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=1))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env(root, tag):
    return dict(
        os.environ,
        MMSLAK_TOY_DATA=str(root / 'toy'),
        MMSLAK_RUN_TAG=tag,
        MAX_RESTARTS='1',
        PORT=str(_free_port()),
        PYTHONPATH=os.pathsep.join([REPO, osp.dirname(__file__)]),
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])


def _workers(marker: str, local_rank: str) -> list:
    """pids of the torchrun workers of the run tagged with ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                env = f.read().split(b'\0')
        except OSError:
            continue
        if (f'MMSLAK_RUN_TAG={marker}'.encode() in env
                and f'LOCAL_RANK={local_rank}'.encode() in env):
            found.append(int(pid))
    return found


def _train(root, name, kill_after=None):
    """2 gloo processes through tools/dist_train.sh with MAX_RESTARTS=1;
    ``kill_after``: SIGKILL rank 1 once that checkpoint is complete.
    Returns the log, the work dir and the final checkpoint."""
    work = root / name
    env = _env(root, f'{root}/{name}')
    log = open(root / f'{name}.out', 'w')
    proc = subprocess.Popen([
        'bash', 'tools/dist_train.sh',
        str(root / 'dist_cfg.py'), '2', '--work-dir',
        str(work)
    ],
                            cwd=REPO,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT)
    killed = []
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        last = work / 'last_checkpoint'
        if (kill_after and not killed and last.is_file()
                and last.read_text().endswith(kill_after)):
            killed = _workers(env['MMSLAK_RUN_TAG'], '1')
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    log.close()
    out = (root / f'{name}.out').read_text()
    assert proc.wait() == 0, out[-4000:]
    assert bool(killed) == bool(kill_after), out[-4000:]
    return out, work, load_checkpoint_file(str(work / 'iter_4.pth'))


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
    """The uninterrupted 2-process run (4 iterations)."""
    root = tmp_path_factory.mktemp('dist')
    subprocess.run([
        sys.executable, 'tools/dataset_converters/make_toy_datasets.py',
        '--out',
        str(root / 'toy'), '--tasks', 'ade', '--num-train', '8', '--num-val',
        '4'
    ],
                   cwd=REPO,
                   check=True)
    (root / 'dist_cfg.py').write_text(
        CONFIG.format(
            base=osp.join(REPO, 'configs', 'demo',
                          'upernet_slak-demo_toy-ade.py')))
    return root, _train(root, 'straight')


def test_dist_train_and_test_two_cpu_processes(straight):
    root, (out, work, _) = straight
    assert out.count('distributed on CPU: gloo process group') == 2, out
    assert 'Auto resumed from the latest checkpoint None' in out
    states = [torch.load(work / f'rank{r}.pth') for r in (0, 1)]
    for r, state in enumerate(states):
        assert state['rank'] == r and state['world_size'] == 2
        assert state['wrapper'] == 'CPUDistributedDataParallel'
        assert state['mmslak'].startswith(osp.join(REPO, 'mmslak')), state
    masks0, masks1 = states[0]['masks'], states[1]['masks']
    assert masks0 and masks0.keys() == masks1.keys()
    assert all(torch.equal(masks0[k], masks1[k]) for k in masks0)
    explored0, explored1 = states[0]['explored'], states[1]['explored']
    assert all(torch.equal(explored0[k], explored1[k]) for k in masks0)
    # updates at iterations 1, 2, 3 (none after the last step)
    assert states[0]['num_updates'] == states[1]['num_updates'] == 3
    assert not all(bool(m.all()) for m in masks0.values())  # some pruned
    # the scope's density
    densities = re.findall(r'SparseTrainingHook .* density ([0-9.]+) ', out)
    assert densities and abs(float(densities[-1]) - 0.5) < 0.01, densities
    w0, w1 = states[0]['weights'], states[1]['weights']
    # DDP keeps the parameters equal (BN running stats are per process)
    params = [k for k in w0 if 'running_' not in k and 'num_batches' not in k]
    assert all(torch.equal(w0[k], w1[k]) for k in params)

    proc = subprocess.run([
        'bash', 'tools/dist_test.sh',
        str(root / 'dist_cfg.py'),
        str(work / 'iter_4.pth'), '2', '--work-dir',
        str(work)
    ],
                          cwd=REPO,
                          env=_env(root, f'{root}/test'),
                          capture_output=True,
                          text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    reports = re.findall(r'Iter\(test\).*mIoU: ([0-9.]+)', out)
    assert len(reports) == 1, out[-4000:]


def _assert_same(a, b, where='checkpoint'):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f'{where}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


def test_a_killed_rank_restarts_the_group_which_resumes_exactly(straight):
    """Preemption: SIGKILL to rank 1 after the checkpoint at iteration 2;
    torchrun (MAX_RESTARTS=1) restarts both processes with --resume, and
    iteration 4 ends with the weights, masks, optimizer and random states
    of the uninterrupted run."""
    root, (_, _, expected) = straight
    out, _, resumed = _train(root, 'killed', kill_after='iter_2.pth')
    # the restarted group (the first start found no checkpoint)
    assert 'resumed epoch: 0, iter: 2' in out, out[-4000:]
    for part in ('state_dict', 'optimizer', 'sparsity'):
        _assert_same(resumed[part], expected[part], part)
        _assert_same(expected[part], resumed[part], part)
    assert resumed['meta']['iter'] == expected['meta']['iter'] == 4
