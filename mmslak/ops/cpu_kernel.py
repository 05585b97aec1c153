"""The compiled CPU kernel of the depthwise convolution (``csrc/``).

Built on first use with ``torch.utils.cpp_extension`` (ninja + the system
C++ compiler, ~1 minute on 2 cores) into a cache OUTSIDE the checkout,
keyed by the source, the compiler, torch and the CPU's instruction set, so
another machine (or CPU) rebuilds instead of loading code it cannot run:

    ${MMSLAK_CACHE:-~/.cache/mmslak}/dwconv_cpu/<key>/

``python -c 'from mmslak.ops.cpu_kernel import build; build()'`` builds it
ahead of time (the set-up script does). Where it cannot be built (no
compiler, ``MMSLAK_DWCONV_CPP=0``) :func:`available` is False, one warning
says why, and the dispatch keeps its other strategies.
"""
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import warnings
from typing import Optional

import torch

_SOURCE = os.path.join(os.path.dirname(__file__), 'csrc', 'dwconv_cpu.cpp')
# The ISA is fixed at build time (-march=native), hence the key below.
_CFLAGS = ['-O3', '-march=native', '-std=c++20', '-fopenmp', '-DNDEBUG']
_state = dict(loaded=None, error=None)
DTYPES = (torch.float32, torch.bfloat16, torch.float64)


def _cpu_flags() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _compiler_version() -> str:
    cxx = os.environ.get('CXX', 'c++')
    try:
        return subprocess.run([cxx, '--version'],
                              capture_output=True,
                              text=True,
                              timeout=30).stdout.split('\n')[0]
    except (OSError, subprocess.SubprocessError):
        return 'none'


def build_key() -> str:
    """Hash of everything that decides the binary."""
    h = hashlib.sha256()
    with open(_SOURCE, 'rb') as f:
        h.update(f.read())
    for part in (_compiler_version(), torch.__version__, _cpu_flags(),
                 ' '.join(_CFLAGS), sys.version):
        h.update(part.encode())
    return h.hexdigest()[:16]


def build_dir() -> str:
    cache = os.environ.get('MMSLAK_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
        'mmslak')
    return os.path.join(cache, 'dwconv_cpu', build_key())


def _source_copy(directory: str) -> str:
    """The source, copied into its keyed build directory once: ninja then
    sees one path and one mtime, so checkouts sharing the cache (same
    source, same key) do not rebuild each other's binary."""
    path = os.path.join(directory, os.path.basename(_SOURCE))
    if not os.path.exists(path):
        tmp = f'{path}.{os.getpid()}.tmp'
        shutil.copyfile(_SOURCE, tmp)
        os.replace(tmp, path)
    return path


def _build(verbose: bool = False) -> None:
    from torch.utils.cpp_extension import load
    directory = build_dir()
    os.makedirs(directory, exist_ok=True)
    load(
        name='mmslak_dwconv_cpu',
        sources=[_source_copy(directory)],
        extra_cflags=_CFLAGS,
        extra_ldflags=['-fopenmp'],
        build_directory=directory,
        is_python_module=False,
        verbose=verbose)


# torch.compile: run (and build) here, not traced; the result is constant.
@torch.compiler.assume_constant_result
def available() -> bool:
    """Build (once per process) and load the kernel; False, with one
    warning, where that is not possible."""
    if _state['loaded'] is None:
        if os.environ.get('MMSLAK_DWCONV_CPP', '1') == '0':
            _state.update(loaded=False, error='MMSLAK_DWCONV_CPP=0')
            return False
        try:
            _build()
            _state['loaded'] = True
        except Exception as e:  # noqa: BLE001  any build failure -> fallback
            msg = str(e).strip().splitlines()
            _state.update(loaded=False, error=msg[-1] if msg else repr(e))
            warnings.warn(
                'mmslak: the compiled CPU depthwise kernel is not available '
                f'({_state["error"]}); using torch kernels instead')
    return _state['loaded']


def usable(x: torch.Tensor) -> bool:
    """Whether the kernel can run on ``x`` (CPU, a supported dtype, built)."""
    return x.device.type == 'cpu' and x.dtype in DTYPES and available()


def error() -> Optional[str]:
    """Why :func:`available` is False (None if it is not)."""
    return _state['error']


def forward(x: torch.Tensor,
            weight: torch.Tensor,
            bias: Optional[torch.Tensor] = None,
            flip: bool = False) -> torch.Tensor:
    """Depthwise same-padded correlation (``flip``: with the kernel flipped,
    i.e. the input gradient), in the memory format of ``x``."""
    y = torch.empty_like(x)
    torch.ops.mmslak_dwconv.forward(x, weight.to(x.dtype),
                                    None if bias is None else bias.to(x.dtype),
                                    y, flip)
    return y


def weight_grad(grad: torch.Tensor, x: torch.Tensor, kh: int,
                kw: int) -> torch.Tensor:
    """dL/dw (C, 1, kh, kw) in fp32 (fp64 for fp64 inputs)."""
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    dw = x.new_empty((x.shape[1], 1, kh, kw), dtype=dt)
    torch.ops.mmslak_dwconv.weight_grad(grad.to(x.dtype), x, dw)
    return dw


def build(verbose: bool = False) -> str:
    """Build (or find built) the kernel now; returns its directory."""
    _build(verbose=verbose)
    return build_dir()


if __name__ == '__main__':
    print(build(verbose='-v' in sys.argv))
