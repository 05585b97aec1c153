"""tools/slurm_{train,test}.sh hand srun OpenMMLab's arguments (a fake
``srun`` on PATH records them; no cluster needed)."""
import os
import os.path as osp
import stat
import subprocess

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OPTION = 'model.backbone.kernel_sizes=[51, 49, 47, 13]'


def _fake_srun(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    record = tmp_path / 'args.txt'
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = dict(
        os.environ,
        PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
        GPUS='16',
        GPUS_PER_NODE='8')
    return env, record


def test_slurm_train_arguments(tmp_path):
    env, record = _fake_srun(tmp_path)
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
    env, record = _fake_srun(tmp_path)
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
