"""The Triton kernels (strategy 'triton') against float64 F.conv2d, on the
CPU through Triton's interpreter (TRITON_INTERPRET=1, set in a child
process so this process's Triton stays compiled) and on CUDA when there."""
import contextlib
import json
import os
import subprocess
import sys
import types

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

# test-side spy: count the kernel launches (the triton path ran)
launched = []
real_launch = tk._launch
tk._launch = lambda *a, **k: launched.append(a[0]) or real_launch(*a, **k)

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
    before = len(launched)
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
                         + [len(launched) - before])
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


def test_every_launch_runs_under_its_tensors_device(monkeypatch):
    """Issue 22 item 5: Triton launches on the *current* CUDA device; a
    tensor on cuda:1 needs a device guard around each launch. Without a GPU:
    spy on torch.cuda.device and on the launched kernel."""
    from mmslak.ops import triton_kernels as tk
    current = ['cuda:0']

    @contextlib.contextmanager
    def device_guard(dev):
        old, current[0] = current[0], str(dev)
        yield
        current[0] = old

    class Kernel:

        def __init__(self, name):
            self.name, self.seen = name, []

        def __getitem__(self, grid):
            return lambda *a, **k: self.seen.append(current[0])

    kernels = types.SimpleNamespace(
        dwconv_fwd_kernel=Kernel('fwd'), dwconv_wgrad_kernel=Kernel('wgrad'))
    monkeypatch.setattr(tk, '_kernels', lambda: kernels)
    monkeypatch.setattr(torch.cuda, 'device', device_guard)
    x = torch.randn(1, 2, 4, 4)
    on_gpu1 = types.SimpleNamespace(device=torch.device('cuda:1'))
    tk._launch(kernels.dwconv_fwd_kernel, (1, ), on_gpu1)
    assert kernels.dwconv_fwd_kernel.seen == ['cuda:1']
    assert current == ['cuda:0']  # restored
    # the CPU (interpreter) path takes no CUDA guard
    tk.forward(x, torch.randn(2, 1, 3, 3))
    tk.weight_grad(x, x, 3, 3)
    assert kernels.dwconv_fwd_kernel.seen == ['cuda:1', 'cuda:0']
    assert kernels.dwconv_wgrad_kernel.seen == ['cuda:0']


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason='needs two GPUs')
def test_triton_on_the_second_gpu():
    import torch.nn.functional as F
    x = torch.randn(1, 8, 20, 20, device='cuda:1', requires_grad=True)
    w = torch.randn(8, 1, 51, 5, device='cuda:1', requires_grad=True)
    with torch.cuda.device(0), dispatch(
            plan=Plan('triton', 'triton', 'triton')):
        y = depthwise_conv2d(x, w)
        y.sum().backward()
        gx, gw = x.grad, w.grad
        x.grad = w.grad = None
        ref = F.conv2d(x.double(), w.double(), padding=(25, 2), groups=8)
        ref.sum().backward()
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, w.grad, rtol=1e-4, atol=1e-3)


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


@pytest.mark.cuda
@pytest.mark.parametrize('kh,kw', [(51, 5), (5, 51)])  # both strips
@pytest.mark.parametrize('cl', [True, False])  # channels_last and NCHW
@pytest.mark.parametrize('amp,tol', [(None, 1e-4), (torch.float16, 5e-3),
                                     (torch.bfloat16, 2e-2)])
def test_triton_cuda_strips_layouts_bias_autocast(kh, kw, cl, amp, tol):
    """The default CUDA plan on SLaK's strips (Triton), with a bias, in both
    layouts, in fp32 and under autocast, against float64."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    x = torch.randn(2, 24, 28, 30, device='cuda')
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    w = (torch.randn(24, 1, kh, kw, device='cuda') / 16).requires_grad_()
    b = torch.randn(24, device='cuda', requires_grad=True)
    xl = x.clone().requires_grad_()
    g = torch.randn_like(x)
    with torch.autocast(
            'cuda', dtype=amp or torch.float16, enabled=amp is not None):
        y = depthwise_conv2d(xl, w, b)
    assert y.dtype == (amp or torch.float32)
    y.backward(g.to(y.dtype))
    cast = (lambda t: t.to(amp).double()) if amp else (lambda t: t.double())
    xr, wr, br = (cast(t.detach()).requires_grad_() for t in (x, w, b))
    yr = F.conv2d(xr, wr, br, padding=(kh // 2, kw // 2), groups=24)
    yr.backward(cast(g))
    for a, r in ((y, yr), (xl.grad, xr.grad), (w.grad, wr.grad), (b.grad,
                                                                  br.grad)):
        assert ((a.double() - r).abs().max() / r.abs().max()).item() <= tol


@pytest.mark.cuda
def test_amp_training_step_on_cuda():
    """One AMP step (GradScaler) of a large-kernel layer: finite loss and
    gradients, weights move."""
    from mmslak.models.layers.large_kernel import LargeKernelDWConv2d
    layer = LargeKernelDWConv2d(16, (51, 5), bias=True).cuda()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler('cuda')
    x = torch.randn(
        2, 16, 32, 32,
        device='cuda').contiguous(memory_format=torch.channels_last)
    before = layer.weight.detach().clone()
    with torch.autocast('cuda', dtype=torch.float16):
        loss = layer(x).float().pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.isfinite(loss)
    assert torch.isfinite(layer.weight.grad).all()
    assert not torch.equal(before, layer.weight.detach())
