"""The Triton kernels (strategy 'triton') against float64 F.conv2d, on the
CPU through Triton's interpreter (TRITON_INTERPRET=1, set in a child
process so this process's Triton stays compiled) and on CUDA when there."""
import json
import os
import subprocess
import sys

import pytest
import torch

from mmslak.ops import Plan, depthwise_conv2d, dispatch

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (n, c, h, w, kh, kw, channels_last, dtype, call): 'op' goes through
# depthwise_conv2d (crop included), 'kernel' calls the kernels with a
# kernel larger than the map (no crop in front).
CASES = [
    (2, 3, 7, 9, 13, 5, True, 'float32', 'op'),
    (1, 5, 4, 3, 9, 9, True, 'float32', 'op'),  # map < kernel: the crop
    (2, 4, 6, 5, 5, 11, False, 'float32', 'op'),  # NCHW
    (1, 3, 3, 4, 11, 13, True, 'float32', 'kernel'),
    (1, 6, 5, 7, 7, 5, True, 'bfloat16', 'op'),
    (1, 6, 5, 7, 5, 7, True, 'float16', 'op'),
]

CHILD = r'''
import json, sys
import torch
import torch.nn.functional as F
import mmslak
from mmslak.ops import depthwise_conv2d, triton_kernels as tk

def ref(x, w, b, g):
    xr = x.double().requires_grad_()
    wr = w.double().requires_grad_()
    kh, kw = w.shape[-2:]
    y = F.conv2d(xr, wr, b.double(), padding=(kh // 2, kw // 2),
                 groups=x.shape[1])
    y.backward(g.double())
    return y, xr.grad, wr.grad

def err(a, r):
    return ((a.double() - r).abs().max() / r.abs().max()).item()

torch.manual_seed(0)
out = dict(file=mmslak.__file__, errors=[])
for n, c, h, w, kh, kw, cl, dt, call in json.loads(sys.argv[1]):
    dt = getattr(torch, dt)
    x = torch.randn(n, c, h, w).to(dt)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(c, 1, kh, kw) / (kh * kw) ** .5).to(dt)
    b = torch.randn(c).to(dt)
    g = torch.randn(n, c, h, w).to(dt)
    before = tk.launches()
    if call == 'op':
        xl = x.detach().requires_grad_()
        wl = wt.detach().requires_grad_()
        y = depthwise_conv2d(xl, wl, b)  # MMSLAK_DWCONV_PLAN forces triton
        y.backward(g)
        got = (y, xl.grad, wl.grad)
    else:
        got = (tk.forward(x, wt, b), tk.forward(g, wt, flip=True),
               tk.weight_grad(g, x, kh, kw))
    out['errors'].append([err(a, r) for a, r in zip(got, ref(x, wt, b, g))]
                         + [tk.launches() - before])
print(json.dumps(out))
'''


def test_triton_kernels_interpreted_on_cpu():
    pytest.importorskip('triton')
    env = dict(
        os.environ,
        TRITON_INTERPRET='1',
        MMSLAK_DWCONV_PLAN='triton,triton,triton',
        PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, '-c', CHILD,
                           json.dumps(CASES)],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert os.path.dirname(out['file']).startswith(REPO), out['file']
    for case, (e_y, e_gx, e_gw, launches) in zip(CASES, out['errors']):
        tol = 1e-4 if case[7] == 'float32' else 2e-2
        assert launches == 3, (case, launches)  # the triton path ran
        assert max(e_y, e_gx, e_gw) <= tol, (case, e_y, e_gx, e_gw)


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET'):
        with dispatch(plan=Plan('triton', 'triton', 'triton')):
            depthwise_conv2d(torch.randn(1, 2, 8, 8), torch.randn(2, 1, 5, 5))


@pytest.mark.cuda
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4),
                                       (torch.float16, 5e-3),
                                       (torch.bfloat16, 2e-2)])
def test_triton_cuda(dtype, tol):
    import torch.nn.functional as F
    x = torch.randn(
        2, 40, 30, 28,
        device='cuda').contiguous(memory_format=torch.channels_last)
    w = torch.randn(40, 1, 51, 5, device='cuda') / 16
    g = torch.randn_like(x)
    xl = x.to(dtype).requires_grad_()
    wl = w.to(dtype).requires_grad_()
    with dispatch(plan=Plan('triton', 'triton', 'triton')):
        y = depthwise_conv2d(xl, wl)
    y.backward(g.to(dtype))
    xr = x.to(dtype).double().requires_grad_()
    wr = w.to(dtype).double().requires_grad_()
    yr = F.conv2d(xr, wr, padding=(25, 2), groups=40)
    yr.backward(g.to(dtype).double())
    for a, r in ((y, yr), (xl.grad, xr.grad), (wl.grad, wr.grad)):
        assert ((a.double() - r).abs().max() / r.abs().max()).item() <= tol
