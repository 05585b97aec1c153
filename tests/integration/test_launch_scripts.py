"""tools/slurm_{train,test}.sh hand srun OpenMMLab's arguments, and
tools/dist_{train,test}.sh hand torchrun theirs or refuse bad ones (a fake
``srun`` / ``torchrun`` on PATH records them; no cluster needed). The real
torchrun runs are in test_dist_cpu.py."""
import os
import os.path as osp
import stat
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OPTION = 'model.backbone.kernel_sizes=[51, 49, 47, 13]'


def _fake(tmp_path, launcher='srun'):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = bin_dir / launcher
    record = tmp_path / 'args.txt'
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(
        os.environ,
        PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
        GPUS='16',
        GPUS_PER_NODE='8')
    return env, record


def test_slurm_train_arguments(tmp_path):
    env, record = _fake(tmp_path)
    subprocess.run([
        'bash', 'tools/slurm_train.sh', 'part', 'job', 'cfg.py', 'work',
        '--amp', '--cfg-options', OPTION
    ],
                   cwd=REPO,
                   env=env,
                   check=True,
                   capture_output=True)
    args = record.read_text().split('\n')
    assert args[:2] == ['-p', 'part']
    for expected in ('--job-name=job', '--gres=gpu:8', '--ntasks=16',
                     '--ntasks-per-node=8', 'cfg.py', '--work-dir=work',
                     '--launcher=slurm', '--amp'):
        assert expected in args, (expected, args)
    # the option with spaces arrives as one argument, after the launcher
    assert args[args.index('--launcher=slurm') +
                1:-1] == ['--amp', '--cfg-options', OPTION], args
    assert any(a.endswith('tools/train.py') for a in args), args


def test_slurm_test_arguments(tmp_path):
    env, record = _fake(tmp_path)
    subprocess.run([
        'bash', 'tools/slurm_test.sh', 'part', 'job', 'cfg.py', 'ck.pth',
        '--cfg-options', OPTION
    ],
                   cwd=REPO,
                   env=env,
                   check=True,
                   capture_output=True)
    args = record.read_text().split('\n')
    assert any(a.endswith('tools/test.py') for a in args), args
    i = args.index('cfg.py')
    assert args[i + 1:-1] == [
        'ck.pth', '--launcher=slurm', '--cfg-options', OPTION
    ], args


def _dist(script, args, env):
    return subprocess.run(['bash', f'tools/{script}', *args],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True)


@pytest.mark.parametrize('count', ['0', '-1', 'two', ''])
@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_dist_scripts_refuse_a_process_count_that_is_not_positive(
        tmp_path, script, count):
    env, record = _fake(tmp_path, 'torchrun')
    args = ['cfg.py', count
            ] if script == 'dist_train.sh' else ['cfg.py', 'ck.pth', count]
    proc = _dist(script, args, env)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
    assert 'GPUS' in lines[0] and f"'{count}'" in lines[0]
    assert not record.exists()  # torchrun never started


def test_dist_train_restarts_the_group_resuming_from_the_latest(tmp_path):
    env, record = _fake(tmp_path, 'torchrun')
    proc = _dist('dist_train.sh', ['cfg.py', '2', '--amp'], env)
    assert proc.returncode == 0, proc.stderr
    args = record.read_text().splitlines()
    assert '--nproc_per_node=2' in args and '--max-restarts=0' in args
    assert '--resume' not in args  # a plain run starts fresh
    env['MAX_RESTARTS'] = '3'
    assert _dist('dist_train.sh', ['cfg.py', '2', '--amp'],
                 env).returncode == 0
    args = record.read_text().splitlines()
    assert '--max-restarts=3' in args
    assert args[args.index('cfg.py'):] == [
        'cfg.py', '--launcher', 'pytorch', '--amp', '--resume'
    ]
    # a checkpoint named by the user is kept, not doubled
    assert _dist('dist_train.sh', ['cfg.py', '2', '--resume', 'a.pth'],
                 env).returncode == 0
    assert record.read_text().splitlines()[-2:] == ['--resume', 'a.pth']
    env['MAX_RESTARTS'] = 'many'
    proc = _dist('dist_train.sh', ['cfg.py', '2'], env)
    assert proc.returncode == 1 and 'MAX_RESTARTS' in proc.stderr
