"""Triton kernels of the depthwise "same" convolution (imported lazily by
:mod:`mmslak.ops.triton_kernels`: ``triton.jit`` reads ``TRITON_INTERPRET``
when a kernel is defined, i.e. when this module is imported).

Tensors are addressed through their (n, c, h, w) strides, so channels_last
(channels contiguous: coalesced channel vectors) and NCHW both work; math
is fp32 whatever the storage dtype.
"""
import triton
import triton.language as tl


@triton.jit
def _load_taps(row, ws, js, pw, W, KW, sxw, sxc, cs, cmask):
    """The (BW, BJ, BC) input window x[row, ws + js - pw, cs] in fp32, zero
    outside the map, past the kernel's KW taps and past the C channels."""
    col = ws[:, None] + js[None, :] - pw  # (BW, BJ)
    m = ((col >= 0) & (col < W) &
         (js[None, :] < KW))[:, :, None] & cmask[None, None, :]
    return tl.load(
        row + col[:, :, None] * sxw + cs[None, None, :] * sxc,
        mask=m,
        other=0.).to(tl.float32)


@triton.jit
def dwconv_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, H, W, KH, KW, sxn, sxc,
                      sxh, sxw, syn, syc, syh, syw, HAS_BIAS: tl.constexpr,
                      FLIP: tl.constexpr, BW: tl.constexpr, BJ: tl.constexpr,
                      BC: tl.constexpr):
    """y[n, c, h, w0:w0+BW] for one (n, h), BW columns and BC channels,
    BJ kernel taps of a row at a time; FLIP correlates with the flipped
    kernel (the input gradient)."""
    pid_nh = tl.program_id(0)
    n = (pid_nh // H).to(tl.int64)
    h = pid_nh % H
    ws = tl.program_id(1) * BW + tl.arange(0, BW)
    cs = tl.program_id(2) * BC + tl.arange(0, BC)
    cmask = cs < C
    ph = KH // 2
    pw = KW // 2
    acc = tl.zeros((BW, BC), dtype=tl.float32)
    for i in range(tl.maximum(0, ph - h), tl.minimum(KH, H + ph - h)):
        row = x_ptr + n * sxn + (h + i - ph) * sxh
        wi = KH - 1 - i if FLIP else i
        for j0 in range(0, KW, BJ):
            js = j0 + tl.arange(0, BJ)
            xv = _load_taps(row, ws, js, pw, W, KW, sxw, sxc, cs, cmask)
            wj = KW - 1 - js if FLIP else js
            wv = tl.load(
                w_ptr + cs[None, :] * (KH * KW) + wi * KW + wj[:, None],
                mask=(js < KW)[:, None] & cmask[None, :],
                other=0.).to(tl.float32)
            acc += tl.sum(xv * wv[None], axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cs, mask=cmask, other=0.).to(tl.float32)[None]
    out = y_ptr + n * syn + h * syh + ws[:, None] * syw + cs[None, :] * syc
    tl.store(
        out,
        acc.to(y_ptr.dtype.element_ty),
        mask=(ws < W)[:, None] & cmask[None, :])


@triton.jit
def dwconv_wgrad_kernel(x_ptr, g_ptr, dw_ptr, C, H, W, KH, KW, sxn, sxc, sxh,
                        sxw, sgn, sgc, sgh, sgw, NJ, BW: tl.constexpr,
                        BJ: tl.constexpr, BC: tl.constexpr):
    """dw[c, i, j0:j0+BJ] (fp32, (C, KH, KW) contiguous) += the sum over
    one image n (program axis 2) of g[n, c, h, w] * x[n, c, h+i-ph,
    w+j-pw]; images are summed with atomics."""
    i = tl.program_id(0) // NJ
    js = (tl.program_id(0) % NJ) * BJ + tl.arange(0, BJ)
    cs = tl.program_id(1) * BC + tl.arange(0, BC)
    n = tl.program_id(2).to(tl.int64)
    cmask = cs < C
    ph = KH // 2
    pw = KW // 2
    acc = tl.zeros((BJ, BC), dtype=tl.float32)
    for h in range(tl.maximum(0, ph - i), tl.minimum(H, H + ph - i)):
        grow = g_ptr + n * sgn + h * sgh
        xrow = x_ptr + n * sxn + (h + i - ph) * sxh
        for w0 in range(0, W, BW):
            ws = w0 + tl.arange(0, BW)
            gm = (ws < W)[:, None] & cmask[None, :]
            gv = tl.load(
                grow + ws[:, None] * sgw + cs[None, :] * sgc,
                mask=gm,
                other=0.).to(tl.float32)
            xv = _load_taps(xrow, ws, js, pw, W, KW, sxw, sxc, cs, cmask)
            acc += tl.sum(gv[:, None, :] * xv, axis=0)
    out = dw_ptr + cs[None, :] * (KH * KW) + i * KW + js[:, None]
    tl.atomic_add(
        out, acc, mask=(js < KW)[:, None] & cmask[None, :], sem='relaxed')
