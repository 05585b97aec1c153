"""tools/setup_env.sh: stdout is exactly the python path, a run on an
up-to-date environment is a no-op, and the environment is keyed by the
device it serves (CPU, or the CUDA build when a GPU is visible).

The test never installs or re-points anything: the shared environment may
serve other checkouts. It asks the script with ``--check`` (changes
nothing); ``make test`` runs the real set-up for this checkout just before
pytest, so in CI the environment is up to date and the test runs in full.
"""
import os
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _setup_env(*args):
    return subprocess.run(['bash', 'tools/setup_env.sh', *args],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=60)


def test_up_to_date_run_prints_only_the_python_path_and_changes_nothing():
    check = _setup_env('--check')
    if check.returncode == 3:
        pytest.skip('the shared environment is set up for another checkout; '
                    'not re-pointing it (make test sets it up first)')
    assert check.returncode == 0, check.stderr[-2000:]
    venv = osp.dirname(osp.dirname(check.stdout.strip()))
    stamp = osp.join(venv, '.mmslak-stamp')
    before = (open(stamp).read(), os.stat(stamp).st_mtime_ns)
    run = _setup_env()
    assert run.returncode == 0, run.stderr[-2000:]
    for proc in (check, run):
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        assert osp.isfile(lines[0]) and os.access(lines[0], os.X_OK)
    assert run.stdout == check.stdout
    assert 'environment up to date' in run.stderr
    assert 'installing' not in run.stderr
    assert (open(stamp).read(), os.stat(stamp).st_mtime_ns) == before


def test_check_reports_a_stale_environment_without_touching_it(tmp_path):
    venv = tmp_path / 'venv'
    proc = subprocess.run(['bash', 'tools/setup_env.sh', '--check'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=60,
                          env=dict(os.environ, MMSLAK_VENV=str(venv)))
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ''
    assert 'not set up' in proc.stderr
    assert not venv.exists()


# The device-keyed environment, tried with fakes: an ``nvidia-smi`` that
# reports a chosen driver, and a stand-in python whose venv, pip and checks
# only log what they were asked (no install happens; the mmcv wheel is taken
# from a pre-filled cache).
FAKE_PYTHON = r'''#!/usr/bin/env bash
echo "python $*" >> "$FAKE_LOG"
if [[ "$1 $2" == "-m venv" ]]; then
    mkdir -p "${@: -1}/bin" && cp "$0" "${@: -1}/bin/python"; exit 0
fi
[[ "$1" == - ]] && cat >> "$FAKE_LOG"
case "$*" in
    *is_available*) exit "${FAKE_CUDA_UNAVAILABLE:-0}" ;;
    *torch.__version__*) echo "$FAKE_EXISTING_TORCH" ;;
esac
exit 0
'''
SMI_NO_DRIVER = ('#!/bin/sh\necho "NVIDIA-SMI has failed because it '
                 'couldn\'t communicate with the NVIDIA driver."\nexit 9\n')
NO_GPU_HERE = pytest.mark.skipif(
    osp.exists('/proc/driver/nvidia/version'),
    reason='a real NVIDIA driver is loaded: the no-GPU case cannot be faked')
WHEEL = 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'


class FakeNode:
    """A cache, a PATH with a fake ``nvidia-smi`` and a fake python."""

    def __init__(self, root):
        self.root, self.cache = root, root / 'cache'
        self.bin, self.log = root / 'bin', root / 'calls.log'
        self.bin.mkdir()
        python = self.bin / 'fake-python'
        python.write_text(FAKE_PYTHON)
        python.chmod(0o755)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(('MMSLAK_', 'CUDA_HOME', 'FAKE_'))
        }
        self.env.update(
            PATH=f'{self.bin}:{os.environ["PATH"]}',
            PYTHON=str(python),
            MMSLAK_CACHE=str(self.cache),
            CUDA_HOME=str(root / 'no-cuda-toolkit'),
            FAKE_LOG=str(self.log))
        self.driver(None)

    def driver(self, version):
        """Make ``nvidia-smi`` report ``version`` (None: no driver)."""
        smi = self.bin / 'nvidia-smi'
        script = f'#!/bin/sh\necho "{version}"\n'
        smi.write_text(SMI_NO_DRIVER if version is None else script)
        smi.chmod(0o755)

    def cache_wheel(self, tag, torch='2.14.1'):
        name = f'mmcv-2.1.0_torch-{torch}_py311_{tag}'
        folder = self.cache / 'wheels' / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / WHEEL).write_text('fake wheel')
        return folder / WHEEL

    def venv(self, tag, torch='2.14.1', suffix=''):
        tag = '' if tag == 'cpu' else f'-{tag}'
        return self.cache / f'venv-py311-torch{torch}-mmcv2.1.0{tag}{suffix}'

    def run(self, *args, **env):
        self.log.write_text('')
        return subprocess.run(['bash', 'tools/setup_env.sh', *args],
                              cwd=ROOT,
                              capture_output=True,
                              text=True,
                              timeout=60,
                              env=dict(self.env, **env))

    def calls(self):
        return self.log.read_text()


@pytest.fixture
def node(tmp_path):
    return FakeNode(tmp_path)


def _stamp(venv):
    path = venv / '.mmslak-stamp'
    return (path.read_text(), os.stat(path).st_mtime_ns)


@NO_GPU_HERE
def test_a_cpu_environment_is_not_taken_for_a_gpu_node(node):
    node.cache_wheel('cpu')
    cpu = node.run()
    assert cpu.returncode == 0, cpu.stderr
    assert cpu.stdout == f'{node.venv("cpu")}/bin/python\n'
    assert f'_cpu/{WHEEL}' in node.calls()
    assert 'python - cpu' in node.calls()
    assert node.run('--check').returncode == 0
    cpu_stamp = _stamp(node.venv('cpu'))

    node.driver('580.95.05')
    check = node.run('--check')
    assert check.returncode == 3, check.stderr
    assert check.stdout == ''
    assert 'cu130' in check.stderr
    gpu = node.run()  # no CUDA wheel cached yet, no nvcc: builds nothing
    assert gpu.returncode == 1
    assert 'nvcc' in gpu.stderr and 'CUDA_HOME' in gpu.stderr
    node.cache_wheel('cu130')
    gpu = node.run()
    assert gpu.returncode == 0, gpu.stderr
    assert gpu.stdout == f'{node.venv("cu130")}/bin/python\n'
    assert f'_cu130/{WHEEL}' in node.calls()
    assert f'_cpu/{WHEEL}' not in node.calls()
    assert 'torch.cuda.is_available()' in node.calls()
    assert 'python - cuda' in node.calls()  # mmcv ops tried on the GPU
    assert _stamp(node.venv('cpu')) == cpu_stamp
    assert node.run('--check').returncode == 0


def test_the_cpu_only_wheelhouse_never_serves_a_cuda_environment(node):
    house = node.root / 'house'
    house.mkdir()
    (house / WHEEL).write_text('prebuilt cpu wheel')
    (house / 'SHA256SUMS').write_text(
        subprocess.run(['sha256sum', WHEEL],
                       cwd=house,
                       capture_output=True,
                       text=True,
                       check=True).stdout)
    node.driver('580.95.05')
    proc = node.run(MMSLAK_WHEELHOUSE=str(house))
    assert proc.returncode == 1
    assert 'MMSLAK_WHEELHOUSE' in proc.stderr and 'nvcc' in proc.stderr
    assert not list(node.cache.glob(f'wheels/*/{WHEEL}'))
    assert WHEEL not in node.calls()


def test_a_gpu_with_too_old_a_driver_stops_before_installing(node):
    node.driver('470.57.02')
    for args in ((), ('--check', )):
        proc = node.run(*args)
        assert proc.returncode == 1, proc.stderr
        for named in ('470.57.02', '580.65.06', 'MMSLAK_TORCH_INDEX_URL',
                      'MMSLAK_TORCH=existing'):
            assert named in proc.stderr
        assert node.calls() == ''
    assert not list(node.cache.glob('venv*'))


def test_a_torch_that_cannot_use_the_visible_gpu_stops_the_set_up(node):
    node.driver('580.95.05')
    node.cache_wheel('cu130')
    proc = node.run(FAKE_CUDA_UNAVAILABLE='1')
    assert proc.returncode == 1
    assert '580.95.05' in proc.stderr
    assert 'MMSLAK_TORCH_INDEX_URL' in proc.stderr
    assert 'torch==2.14.1' in node.calls()
    assert WHEEL not in node.calls()
    assert not (node.venv('cu130') / '.mmslak-stamp').exists()


def test_a_torch_index_names_the_build_its_tag_and_its_driver(node):
    node.driver('470.57.02')
    url = 'https://download.pytorch.org/whl/cu126'
    proc = node.run(MMSLAK_TORCH_INDEX_URL=url)
    assert proc.returncode == 1
    assert '525.60.13' in proc.stderr  # CUDA 12's oldest driver
    node.driver('535.104.05')
    node.cache_wheel('cu126')
    proc = node.run(MMSLAK_TORCH_INDEX_URL=url)
    assert proc.returncode == 0, proc.stderr
    venv = node.venv('cu126', suffix='-index')
    assert proc.stdout == f'{venv}/bin/python\n'
    assert f'--index-url {url} torch==2.14.1' in node.calls()
    bad = node.run(MMSLAK_TORCH_INDEX_URL='https://example.org/simple')
    assert bad.returncode == 1 and 'MMSLAK_TORCH_INDEX_URL' in bad.stderr


def test_an_existing_torch_is_used_as_installed(node):
    node.driver('550.54.15')
    node.cache_wheel('cu124', torch='2.5.1+cu124')
    proc = node.run(
        MMSLAK_TORCH='existing', FAKE_EXISTING_TORCH='2.5.1+cu124 12.4')
    assert proc.returncode == 0, proc.stderr
    venv = node.venv('cu124', torch='2.5.1+cu124', suffix='-existing')
    assert proc.stdout == f'{venv}/bin/python\n'
    assert f'-m venv --system-site-packages {venv}' in node.calls()
    assert 'torch==' not in node.calls()
    bad = node.run(MMSLAK_TORCH='latest')
    assert bad.returncode == 1 and 'MMSLAK_TORCH' in bad.stderr
