"""Speed of SLaK-T with mmslak's depthwise op, side by side in one run.

Compares, at the same input and on the same machine:

* SLaK-T as mmslak runs it (dispatched large-kernel op, channels_last);
* the same model computed the reference way (NCHW ``F.conv2d`` large
  kernels, no crop: ``mmslak.ops.dispatch('reference')``);
* mmpretrain's ConvNeXt-T, NCHW (as mmpretrain runs it) and channels_last;

for inference and for a training step (forward, backward, AdamW), at batch
4 x 224 and 2 x 512. Models are timed round-robin, one repeat of each in
turn, and the medians are compared, so that load from other processes hits
all of them alike. Then the large-kernel op alone (every SLaK-T shape), in
achieved GFLOP/s and as a fraction of a large sgemm's GFLOP/s measured in
the same run, and the peak memory of a training step vs ConvNeXt-T.

Per pass (forward, input grad ``dgrad``, weight grad ``wgrad``) the op
table times the plan the dispatch picks and torch's own kernel in the same
layout, interleaved with a 1024^3 sgemm in the same rounds; GFLOP/s count
the useful MACs (kernel cropped to what meets the map). ``--device cuda``
adds a per-shape table: Triton vs cuDNN (both layouts), fp16 and fp32, and
the reference's implicit-GEMM forward when installed.

Notes on the compiled CPU kernel (``mmslak/ops/csrc/dwconv_cpu.cpp``), what
was tried and measured (2 shared cores, AVX-512, min or median of rounds):

* FFT weight gradient (the previous plan): 6-11% of sgemm; oneDNN's
  channels_last depthwise weight gradient 0-7%.
* Direct convolution over a channel-blocked, zero-padded copy
  ([n][C/16][h][w + pad][16], packed once per call, 64-byte aligned: no
  tails, no bounds checks, bf16 converted to fp32 while packing), vectorised
  over 16 channels, register-blocked: 16 outputs x up to 13 taps of a
  kernel row in zmm registers, each input vector loaded once and FMA'd into
  every output it meets ("sliding" outer product, ~0.25-0.45 loads/FMA).
  The weight gradient uses the same product with 13 tap accumulators and
  16 grad vectors in registers, summed over n, h, w per channel block;
  kernel rows are split across threads when channel blocks are few.
  1 thread, min of 15 (SLaK-T stage 1-3 strips, batch 4): forward 49-100%
  of sgemm, weight grad 31-105% (3-10x the FFT).
* At 2 threads on the shared machine (``--quick --threads 2``, medians of
  3): stage 1 strips 42-60% (fwd/dgrad) and 29-57% (wgrad) of sgemm; stage
  2-3 strips 6-38%, where the same rounds' torch kernels fall as low (the
  small per-call work meets OpenMP barriers with threads descheduled by
  other processes).
* Second round (A/B against the first kernel built side by side, same
  rounds, 1 thread, min of 11, % of the same rounds' sgemm, stage 1-3
  strips at batch 4; first kernel -> now):

  - a wide kernel (5xK) runs as a tall one on the transposed map (packing
    reads through strides, so it is free): rows outside the map were
    already skipped exactly, columns were FMA'd with zero padding (5x49 on
    28 columns: ~45% of the FMAs were zeros);
  - register blocks of 12 / 14 / 16 outputs (the fewest blocks of 16, then
    the smallest size that covers the row): 56, 28, 14 are 4, 2, 1 x 14,
    where 16-wide blocks wasted 14% of the columns;
  - packing and stores vectorised for channels_last (whole 16-channel
    vectors); per-call overhead (a 1x1 kernel, stage 1 at batch 4) 5.6-9
    ms -> 2.5-3 ms (a clone of the map: 0.8 ms);
  - weight gradient: two kernel rows at once, interleaved in one slide (10
    independent accumulator chains for Kx5 instead of 5: the FMA latency
    was the limit) sharing the grad vectors, and kernel rows in blocks of
    8 sweeping all grad rows, so the x rows they meet stay in L1 ("two
    output rows per x row", in the weight gradient's loop order).

  Result (three runs, per shape and pass): forward 37-89% -> 64-129%,
  input grad 39-86% -> 65-150%, weight grad 27-68% -> 51-126% (every pass
  of every stage 1-3 strip >= 50% of sgemm at 1 thread; the README has the
  worst run per shape). At 2 threads on the loaded machine (load 5-10 on
  2 cores) the same A/B gave sgemm itself at 50-70 GF/s
  (less than its 1-thread 100-140) and 6-300% per pass for both kernels:
  thread barriers with one thread descheduled dominate; a quiet machine is
  needed for that column.
* Not tried: Winograd-style strips (the direct kernel is already near the
  sgemm rate, and Winograd's transforms cost per-call packing), an
  implicit GEMM (a depthwise convolution has no reduction over channels:
  a GEMM would be a batch of rank-1 products or a Toeplitz matrix with
  K-fold redundant loads), caching the forward's packed x for the weight
  gradient (saves ~1 ms per call at stage 1, but holds a padded copy of
  every large-kernel input for the whole backward).

Example::

    python tools/analysis/benchmark.py --quick
    python tools/analysis/benchmark.py --threads 2
    python tools/analysis/benchmark.py --device cuda --batch-sizes 64 \
        --sizes 224
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

import mmslak  # noqa: F401  (registers SLaK)
from mmslak.cli.progress import progress_bar
from mmslak.ops import cropped_kernel_size
from mmslak.ops import depthwise_conv as dc
from mmslak.ops import dispatch, plan_for, preferred_memory_format
from mmslak.ops.timing import time_fn

SLAK_T_STAGES = ((124, 51), (249, 49), (499, 47), (998, 13))  # (C, K)
SMALL_KERNEL = 5


def _add_selection_args(parser):
    """What the model table times, and how rounds are summarised."""
    parser.add_argument(
        '--models',
        nargs='+',
        choices=MODEL_NAMES,
        default=list(MODEL_NAMES),
        help='model variants to time (slak and convnext always)')
    parser.add_argument(
        '--train-sizes',
        type=int,
        nargs='+',
        default=None,
        help='--sizes entries that also time a training step (default all)')
    parser.add_argument(
        '--stat',
        choices=['median', 'min'],
        default='median',
        help='statistic over rounds (min: robust on a loaded machine)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument(
        '--threads', type=int, default=2, help='CPU threads (torch)')
    parser.add_argument(
        '--batch-sizes',
        type=int,
        nargs='+',
        default=None,
        help='one per --sizes entry (default 4 2)')
    parser.add_argument(
        '--sizes',
        type=int,
        nargs='+',
        default=None,
        help='input resolutions (default 224 512)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='timed repeats per model (median is reported)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='batch 4 x 224 only, fewer repeats, op table at '
        '224 only')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='autocast (bf16 on CPU, fp16 on CUDA)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile every model (SLaK-T through the op\'s custom '
        'ops, ConvNeXt-T as is; the reference variant is left out: its '
        'plain F.conv2d path says nothing about the op); the first calls '
        '(compilation) are not timed')
    _add_selection_args(parser)
    parser.add_argument('--skip-models', action='store_true')
    parser.add_argument('--skip-ops', action='store_true')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument('--json', default=None, help='also write results')
    parser.add_argument('--memory-child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [224] if args.quick else [224, 512]
    if args.batch_sizes is None:
        args.batch_sizes = [4, 2][:len(args.sizes)] if len(
            args.sizes) <= 2 else [2] * len(args.sizes)
    if len(args.batch_sizes) != len(args.sizes):
        parser.error(f'--batch-sizes ({args.batch_sizes}) needs one entry '
                     f'per --sizes entry ({args.sizes})')
    args.models = [
        n for n in MODEL_NAMES if n in set(args.models)
        | {'slak', 'convnext'} and not (args.compile and n == 'slak_reference')
    ]
    if args.train_sizes is None:
        args.train_sizes = list(args.sizes)
    if not set(args.train_sizes) <= set(args.sizes):
        parser.error(f'--train-sizes ({args.train_sizes}) must be among '
                     f'--sizes ({args.sizes})')
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda asked for but CUDA is not available')
    return args


# ------------------------------------------------------------------ models
def build(name: str, device: str) -> torch.nn.Module:
    from mmpretrain.models.backbones import ConvNeXt

    from mmslak.models.backbones.slak import SLaK
    if name.startswith('convnext'):
        model = ConvNeXt('tiny', gap_before_final_norm=True)
    else:
        model = SLaK('tiny')
    return model.to(device)


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class ModelVariant:
    """One model variant with its inference and training-step closures."""

    def __init__(self, name, device, amp, compile=False):
        self.name = name
        self.device = device
        self.model = build(name, device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.amp = amp
        self.mode = 'reference' if name == 'slak_reference' else None
        self.channels_last = name == 'convnext_cl'
        if name == 'slak_deploy':
            self.model.switch_to_deploy()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:  # the optimizer holds the same parameters
            self.model = torch.compile(self.model)

    def _ctx(self):
        dev = 'cuda' if self.device.startswith('cuda') else 'cpu'
        dtype = torch.float16 if dev == 'cuda' else torch.bfloat16
        return torch.autocast(dev, dtype=dtype, enabled=self.amp)

    def _input(self, x):
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def infer(self, x):
        self.model.eval()
        with dispatch(self.mode), torch.no_grad(), self._ctx():
            self.model(self._input(x))
        sync(self.device)

    def train_step(self, x):
        self.model.train()
        with dispatch(self.mode):
            self.opt.zero_grad(set_to_none=True)
            with self._ctx():
                out = self.model(self._input(x))[-1]
            loss = out.float().pow(2).mean()
            loss.backward()
            self.opt.step()
        sync(self.device)


def time_round_robin(fns: dict, repeats: int, what: str = '') -> dict:
    """Seconds per call of each closure, timed one after another in each
    round by :func:`mmslak.ops.timing.time_fn` (its block-size estimate is
    the round's warm-up), with a progress bar; the median over rounds, or
    the minimum (``--stat min``: robust on a loaded machine)."""
    print(f'timing {what}: {len(fns)} closures x {repeats} rounds', flush=True)
    bar = progress_bar(repeats * len(fns))  # stderr, a terminal only
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(time_fn(fn).median)
            bar.update()
    bar.finish()
    stat = min if STAT['name'] == 'min' else statistics.median
    return {k: stat(v) for k, v in times.items()}


STAT = dict(name='median')  # set from --stat in main()
MODEL_NAMES = ('slak', 'slak_deploy', 'slak_reference', 'convnext',
               'convnext_cl')
MEMORY_MODELS = ('slak', 'slak_reference', 'convnext')
LABELS = {
    'slak': 'SLaK-T (mmslak)',
    'slak_deploy': 'SLaK-T (mmslak, switch_to_deploy)',
    'slak_reference': 'SLaK-T (reference: NCHW F.conv2d)',
    'convnext': 'ConvNeXt-T (mmpretrain, NCHW)',
    'convnext_cl': 'ConvNeXt-T (channels_last)',
}


def _model_fns(variants, kind, x):
    names = [n for n in variants if kind == 'inference' or n != 'slak_deploy']
    return {
        n: (lambda r=variants[n]: r.infer(x)) if kind == 'inference' else
        (lambda r=variants[n]: r.train_step(x))
        for n in names
    }


def bench_models(args, results):
    variants = {
        n: ModelVariant(n, args.device, args.amp, args.compile)
        for n in args.models
    }
    compiled = ', all compiled' if args.compile else ''
    for bs, size in zip(args.batch_sizes, args.sizes):
        x = torch.randn(bs, 3, size, size, device=args.device)
        for kind in ('inference', 'train_step'):
            if kind == 'train_step' and size not in args.train_sizes:
                continue
            key = f'{kind}@{bs}x{size}' + ('+compile' if args.compile else '')
            fns = _model_fns(variants, kind, x)
            if args.compile:  # compile (and recompile per shape) untimed
                for name, fn in fns.items():
                    print(
                        f'compiling {name} ({kind}, {bs}x{size})', flush=True)
                    fn()
                    fn()
            med = time_round_robin(fns, args.repeats, key)
            results[key] = med
            base = med['convnext']
            print(f'\n{kind}, batch {bs} x {size} ({STAT["name"]} of '
                  f'{args.repeats}{compiled}; ratio = time / ConvNeXt-T '
                  'NCHW time)')
            for n in med:
                print(f'  {LABELS[n]:<36} {med[n] / bs * 1e3:9.1f} ms/img '
                      f'{med[n] / base:6.2f}x')
            for other in ('slak_reference', 'convnext_cl'):
                if other in med:
                    print(f'  SLaK-T (mmslak) / {LABELS[other]}: '
                          f'{med["slak"] / med[other]:.2f}x')


# --------------------------------------------------------------------- ops
def op_shapes(batch: int, size: int):
    """(label, x shape, kernel shape) of every large-kernel conv in SLaK-T."""
    shapes = []
    for i, (c, k) in enumerate(SLAK_T_STAGES):
        h = size // 4 // 2**i
        for kh, kw in ((k, SMALL_KERNEL), (SMALL_KERNEL, k), (SMALL_KERNEL,
                                                              SMALL_KERNEL)):
            shapes.append(
                (f's{i + 1} {kh}x{kw}@{h}', (batch, c, h, h), (kh, kw), i))
    return shapes


def sgemm_fn(device: str):
    n = 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def fn():
        torch.mm(a, b)
        sync(device)

    return fn, 2 * n**3


def pass_fns(x, w, g, strategies, device):
    """Closures running each pass with the given (forward, input grad,
    weight grad) strategies, through the op's own pass functions."""
    size = dc.fft_shape(*x.shape[-2:], *w.shape[-2:])

    def run(fn, *a):

        def call():
            fn(*a)
            sync(device)

        return call

    return (run(dc._forward_pass, x, w, None, strategies[0], size),
            run(dc._input_grad_pass, g, w, strategies[1], size,
                None), run(dc._weight_grad_pass, g, x, w, strategies[2], size))


PASSES = ('fwd', 'dgrad', 'wgrad')


def _native(x) -> str:
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return 'cl' if cl else 'nchw'


def _op_case(label, xs, kh, kw, device, dtype=torch.float32, stage=None):
    """(x, cropped weight, grad, useful FLOPs) of one shape, in the layout
    the backbone runs that stage in."""
    x = torch.randn(xs, device=device, dtype=dtype)
    if stage is not None:
        x = x.contiguous(
            memory_format=preferred_memory_format(x, SLAK_T_STAGES[stage][1]))
    else:
        x = x.contiguous(memory_format=torch.channels_last)
    ch, cw = cropped_kernel_size(kh, kw, xs[2], xs[3])
    w = torch.randn(xs[1], 1, ch, cw, device=device, dtype=dtype)
    g = torch.randn_like(x)
    return x, w, g, 2 * xs[0] * xs[1] * xs[2] * xs[3] * ch * cw


def bench_ops(args, results):
    """Per pass: ours (the dispatched plan) and torch's own kernel in the
    same layout, and a 1024^3 sgemm, timed round-robin in one run."""
    depths = (3, 3, 9, 3)
    reps = max(3, args.repeats)
    for bs, size in zip(args.batch_sizes, args.sizes):
        print(f'\nlarge-kernel op per pass, SLaK-T shapes at batch {bs} x '
              f'{size}, {torch.get_num_threads()} threads (GFLOP/s of the '
              f'kernel cropped to the map; % of the same rounds\' sgemm)')
        print(f'  {"shape":<16}{"layout":>7}{"plan":>16}' +
              ''.join(f'{p + " GF/s":>12}{"%sg":>5}{"xtorch":>7}'
                      for p in PASSES))
        rows, tot = [], dict(flop=0., ours=0., torch=0.)
        for label, xs, (kh, kw), stage in op_shapes(bs, size):
            x, w, g, flop = _op_case(
                label, xs, kh, kw, args.device, stage=stage)
            plan = plan_for(x, w) or (_native(x), ) * 3
            mm, mm_flop = sgemm_fn(args.device)
            fns = {'mm': mm}
            for p, o, t in zip(
                    PASSES, pass_fns(x, w, g, plan, args.device),
                    pass_fns(x, w, g, (_native(x), ) * 3, args.device)):
                fns[p], fns['torch_' + p] = o, t
            med = time_round_robin(fns, reps, label)
            peak = mm_flop / med['mm'] / 1e9
            row = dict(
                shape=label,
                layout=_native(x),
                plan=list(plan),
                sgemm_gflops=peak)
            line = f'  {label:<16}{_native(x):>7}{",".join(plan):>16}'
            for p in PASSES:
                gf = flop / med[p] / 1e9
                row[p] = dict(
                    gflops=gf,
                    fraction_of_sgemm=gf / peak,
                    speedup_vs_torch=med['torch_' + p] / med[p])
                line += (f'{gf:12.1f}{gf / peak:5.0%}'
                         f'{med["torch_" + p] / med[p]:6.1f}x')
                tot['flop'] += flop * depths[stage]
                tot['ours'] += med[p] * depths[stage]
                tot['torch'] += med['torch_' + p] * depths[stage]
            print(line)
            rows.append(row)
        print(f'  all SLaK-T large-kernel convs, 3 passes: '
              f'{tot["flop"] / tot["ours"] / 1e9:.1f} GFLOP/s, '
              f'{tot["torch"] / tot["ours"]:.2f}x faster than torch\'s '
              f'kernels in the same layout')
        results[f'ops@{bs}x{size}'] = dict(
            rows=rows, speedup_vs_torch=tot['torch'] / tot['ours'])


def _implicit_gemm():
    """The reference's implicit-GEMM CUDA op, where installed."""
    try:
        from depthwise_conv2d_implicit_gemm import \
            _DepthWiseConv2dImplicitGEMMFP32  # noqa: E501
        return _DepthWiseConv2dImplicitGEMMFP32
    except ImportError:
        return None


def bench_ops_cuda(args, results):
    """Per shape and pass on CUDA: ours (Triton), cuDNN channels_last,
    cuDNN NCHW (and the reference's implicit GEMM, fwd, fp32, when
    installed), in fp16 and fp32: ms per call."""
    bs, size = args.batch_sizes[0], args.sizes[0]
    igemm = _implicit_gemm()
    print(f'\nCUDA per shape and pass, batch {bs} x {size}: ms per call '
          f'(speed-up of Triton over the best cuDNN layout)')
    print('  The default CUDA plan (mmslak.ops.heuristic_plan) runs Triton '
          'on the strips (>= 100 taps, maps >= 8x8), cuDNN elsewhere: a '
          'ratio > 1x on a strip row confirms it, < 1x on a strip row (or '
          '> 1x on another) refutes it ("plan" column: its choice).')
    for dtype in (torch.float16, torch.float32):
        print(f'  {dtype}')
        for label, xs, (kh, kw), stage in op_shapes(bs, size):
            x, w, g, _ = _op_case(label, xs, kh, kw, args.device, dtype)
            fns = {}
            for strat in ('triton', 'cl', 'nchw'):
                for p, fn in zip(PASSES,
                                 pass_fns(x, w, g, (strat, ) * 3,
                                          args.device)):
                    fns[f'{strat}_{p}'] = fn
            if igemm is not None and dtype == torch.float32:
                fns['igemm_fwd'] = lambda: (igemm.apply(x, w), sync('cuda'))
            med = time_round_robin(fns, max(3, args.repeats), label)
            planned = dc.heuristic_plan(x, w)
            line = f'    {label:<16} plan {"triton" if planned else "cudnn"}'
            for p in PASSES:
                cudnn = min(med[f'cl_{p}'], med[f'nchw_{p}'])
                line += (f' {p} triton {med[f"triton_{p}"] * 1e3:7.3f} '
                         f'cudnn {cudnn * 1e3:7.3f} '
                         f'({cudnn / med[f"triton_{p}"]:.2f}x)')
            if 'igemm_fwd' in med:
                line += f' igemm fwd {med["igemm_fwd"] * 1e3:7.3f}'
            print(line)
            results[f'cuda@{dtype}:{label}'] = med


# ------------------------------------------------------------------ memory
def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def memory_child(args) -> None:
    """Peak memory of training steps of one model, in a fresh process."""
    name = args.memory_child
    bs, size = args.batch_sizes[0], args.sizes[0]
    x = torch.randn(bs, 3, size, size, device=args.device)
    variant = ModelVariant(name, args.device, args.amp)
    if args.device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(2):
            variant.train_step(x)
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_kib('VmRSS') * 1024
        for _ in range(2):
            variant.train_step(x)
        peak = _rss_kib('VmHWM') * 1024 - base
    # gradients + AdamW's two moments: 3 fp32 tensors per parameter,
    # allocated by the first step (the weights exist before ``base``)
    state = 3 * sum(p.numel() * p.element_size()
                    for p in variant.model.parameters())
    print(json.dumps({'peak_bytes': peak, 'state_bytes': state}))


def bench_memory(args, results):
    bs, size = args.batch_sizes[0], args.sizes[0]
    peaks = {}
    for name in [n for n in MEMORY_MODELS if n in args.models]:
        print(
            f'peak memory: 2 training steps of {name} in a new process',
            flush=True)
        cmd = [
            sys.executable,
            os.path.abspath(__file__), '--memory-child', name, '--device',
            args.device, '--threads',
            str(args.threads), '--batch-sizes',
            str(bs), '--sizes',
            str(size)
        ] + (['--amp'] if args.amp else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
    what = 'allocated by torch' if args.device.startswith('cuda') else \
        'process peak RSS'
    print(f'\npeak memory of 2 training steps at batch {bs} x {size} '
          f'({what}, over the model and optimizer built); of which '
          'gradients + AdamW state (12 bytes per fp32 parameter), and the '
          'rest (activations, workspaces)')
    ref = peaks['convnext']
    for name, p in peaks.items():
        rest, ref_rest = (p['peak_bytes'] - p['state_bytes'],
                          ref['peak_bytes'] - ref['state_bytes'])
        print(f'  {LABELS[name]:<36} {p["peak_bytes"] / 2**20:8.0f} MiB '
              f'{p["peak_bytes"] / ref["peak_bytes"]:6.2f}x | state '
              f'{p["state_bytes"] / 2**20:6.0f} MiB '
              f'{p["state_bytes"] / ref["state_bytes"]:5.2f}x | rest '
              f'{rest / 2**20:6.0f} MiB {rest / ref_rest:5.2f}x')
    results[f'memory@{bs}x{size}'] = peaks


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    STAT['name'] = args.stat
    if args.memory_child:
        memory_child(args)
        return
    print(f'torch {torch.__version__}, device {args.device}, '
          f'{torch.get_num_threads()} threads, amp={args.amp}')
    if args.device.startswith('cuda'):
        print(f'GPU: {torch.cuda.get_device_name()}')
    results = {}
    if not args.skip_models:
        bench_models(args, results)
    if not args.skip_ops:
        op_args = argparse.Namespace(**vars(args))
        if args.quick:
            op_args.batch_sizes = args.batch_sizes[:1]
            op_args.sizes = args.sizes[:1]
        bench_ops(op_args, results)
        if args.device.startswith('cuda'):
            bench_ops_cuda(op_args, results)
    if not args.skip_memory:
        bench_memory(args, results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
