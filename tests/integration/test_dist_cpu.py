"""``bash tools/dist_train.sh CONFIG 2`` and ``tools/dist_test.sh`` end to
end on the CPU (2 processes, gloo) on the toy ADE20K: both ranks hold the
same sparse masks and weights, and the metric is reported once."""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        torch.cuda.is_available(), reason='tests the CPU (gloo) path')
]

CONFIG = """
_base_ = [{base!r}]
custom_imports = dict(imports=['mmslak', 'mmslak.datasets', 'dist_probe'],
                      allow_failed_imports=False)
custom_hooks = [
    dict(type='SparseTrainingHook', density=0.5, init='erk', scope='all',
         exclude=[r'^(?!backbone\\.)'], update_interval=2, prune_rate=0.5),
    dict(type='DumpRankStateHook'),
]
train_cfg = dict(max_iters=4, val_interval=4)
train_dataloader = dict(batch_size=2)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=4, max_keep_ckpts=1))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(args, env, log):
    proc = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    log.write_text(out)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_dist_train_and_test_two_cpu_processes(tmp_path):
    toy = str(tmp_path / 'toy')
    subprocess.run([
        sys.executable, 'tools/dataset_converters/make_toy_datasets.py',
        '--out', toy, '--tasks', 'ade', '--num-train', '8', '--num-val', '4'
    ],
                   cwd=REPO,
                   check=True)
    cfg = tmp_path / 'dist_cfg.py'
    cfg.write_text(
        CONFIG.format(
            base=osp.join(REPO, 'configs', 'demo',
                          'upernet_slak-demo_toy-ade.py')))
    work = str(tmp_path / 'work')
    env = dict(
        os.environ,
        MMSLAK_TOY_DATA=toy,
        PORT=str(_free_port()),
        PYTHONPATH=os.pathsep.join([REPO, osp.dirname(__file__)]),
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    out = _run(
        ['bash', 'tools/dist_train.sh',
         str(cfg), '2', '--work-dir', work], env, tmp_path / 'train.out')
    assert out.count('distributed on CPU: gloo process group') == 2, out
    states = [torch.load(osp.join(work, f'rank{r}.pth')) for r in (0, 1)]
    for r, state in enumerate(states):
        assert state['rank'] == r and state['world_size'] == 2
        assert state['wrapper'] == 'CPUDistributedDataParallel'
        assert state['mmslak'].startswith(osp.join(REPO, 'mmslak')), state
    masks0, masks1 = states[0]['masks'], states[1]['masks']
    assert masks0 and masks0.keys() == masks1.keys()
    assert all(torch.equal(masks0[k], masks1[k]) for k in masks0)
    assert not all(bool(m.all()) for m in masks0.values())  # some pruned
    # the scope's density (ERK keeps some layers dense, outside the masks)
    densities = re.findall(r'SparseTrainingHook .* density ([0-9.]+) ', out)
    assert densities and abs(float(densities[-1]) - 0.5) < 0.01, densities
    w0, w1 = states[0]['weights'], states[1]['weights']
    # DDP keeps the parameters equal (BN running stats are per process)
    params = [k for k in w0 if 'running_' not in k and 'num_batches' not in k]
    assert all(torch.equal(w0[k], w1[k]) for k in params)

    ckpt = osp.join(work, 'iter_4.pth')
    out = _run([
        'bash', 'tools/dist_test.sh',
        str(cfg), ckpt, '2', '--work-dir', work
    ], env, tmp_path / 'test.out')
    reports = re.findall(r'Iter\(test\).*mIoU: ([0-9.]+)', out)
    assert len(reports) == 1, out[-4000:]
