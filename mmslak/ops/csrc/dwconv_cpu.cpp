// Depthwise stride-1 "same" convolution with odd (kh, kw) kernels on the CPU:
// forward, input gradient and weight gradient, multi-threaded on torch's
// intra-op pool (at::parallel_for, so torch.set_num_threads holds).
//
// Algorithm (see tools/analysis/benchmark.py for what was tried/measured):
// inputs are packed once per call into a channel-blocked, zero-padded layout
// [n][channel block][h][w + padding][L lanes] (L = one SIMD register of
// channels, 64-byte aligned), converting bf16 to fp32 on the way. Then a
// register-blocked direct convolution vectorised over the L channels:
//  * forward / input grad: WB outputs of one row in registers, JB kernel taps
//    of one kernel row in registers, each input vector loaded once and
//    FMA'd into every output it meets ("sliding" outer product);
//  * weight grad: JB tap accumulators in registers, WB grad-output vectors
//    in registers, the same sliding product, summed over n, h, w.
// The input gradient is the forward with the kernel flipped. A kernel wider
// than tall (5xK) runs transposed (packing reads through the strides, so
// this is free): rows outside the map are skipped exactly, columns are not,
// so the long axis goes down the rows.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;  // one zmm register
constexpr int kMaxJB = 13;     // kernel taps in registers
constexpr int kWB = 16;        // outputs (or grad vectors) in registers
constexpr int kShortJB = 7;    // up to here also blocks of 12 / 14 outputs
#else
constexpr int kVecBytes = 32;  // one ymm register (AVX2), 16 registers
constexpr int kMaxJB = 5;
constexpr int kWB = 8;
constexpr int kShortJB = 0;
#endif

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVecBytes)));
  static constexpr int L = kVecBytes / sizeof(T);
};

struct Free {
  void operator()(void* p) const { std::free(p); }
};

template <typename T>
std::unique_ptr<T, Free> aligned_buffer(int64_t n) {
  size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, std::max<size_t>(bytes, 64));
  TORCH_CHECK(p != nullptr, "mmslak dwconv: out of memory (", bytes, " B)");
  return std::unique_ptr<T, Free>(static_cast<T*>(p));
}

// Geometry of one call: the packed layout and the tap blocking.
struct Geo {
  int64_t N, C, H, W, kh, kw, ph, pw;
  int64_t L, CB;       // lanes, channel blocks
  int64_t JB, nch;     // taps per chunk, chunks per kernel row
  int64_t kwp;         // nch * JB >= kw (extra taps have zero weight)
  int64_t WB;          // outputs per register block (kWB, 14 or 12)
  int64_t Wr, Wp;      // W rounded up to WB; packed row length
  Geo(const at::Tensor& x, int64_t kh_, int64_t kw_, int64_t lanes) {
    N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    kh = kh_, kw = kw_, ph = kh / 2, pw = kw / 2, L = lanes;
    CB = (C + L - 1) / L;
    nch = (kw + kMaxJB - 1) / kMaxJB;
    JB = (kw + nch - 1) / nch;
    kwp = nch * JB;
    // The fewest blocks of kWB outputs, then the smallest block that covers
    // W (56 = 4 x 14: no wasted columns on SLaK-T's maps at 224).
    const int64_t nwb = (W + kWB - 1) / kWB, need = (W + nwb - 1) / nwb;
    WB = JB > kShortJB || need > 14 ? kWB : need > 12 ? 14 : 12;
    Wr = nwb * WB;
    Wp = Wr + kwp - 1;
  }
  int64_t row(int64_t n, int64_t cb, int64_t h) const {
    return ((n * CB + cb) * H + h) * Wp * L;
  }
};

template <typename Tin>
inline float to_f(Tin v) { return static_cast<float>(v); }
inline double to_f(double v) { return v; }

// src (N, C, H, W) with any strides -> dst[n][cb][h][pw + w][l], zeros
// elsewhere (left/right padding, rows' tails, channels >= C).
template <typename Tin, typename T>
void pack_map(const at::Tensor& src, const Geo& g, T* dst) {
  const Tin* s = src.data_ptr<Tin>();
  const int64_t sn = src.stride(0), sc = src.stride(1), sh = src.stride(2),
                sw = src.stride(3);
  constexpr int64_t L = Vec<T>::L;
  at::parallel_for(0, g.N * g.CB * g.H, 16, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t h = t % g.H, cb = (t / g.H) % g.CB, n = t / g.H / g.CB;
      T* d = dst + g.row(n, cb, h);
      const int64_t c0 = cb * L, nc = std::min(L, g.C - c0);
      const Tin* sp = s + n * sn + c0 * sc + h * sh;
      std::memset(d, 0, sizeof(T) * g.pw * L);
      T* tail = d + (g.pw + g.W) * L;
      std::memset(tail, 0, sizeof(T) * (d + g.Wp * L - tail));
      if (sc == 1 && nc == L) {  // channels_last: whole vectors, vectorised
        for (int64_t w = 0; w < g.W; ++w)
          for (int64_t l = 0; l < L; ++l)
            d[(g.pw + w) * L + l] = static_cast<T>(sp[w * sw + l]);
      } else {
        if (nc < L) std::memset(d + g.pw * L, 0, sizeof(T) * g.W * L);
        for (int64_t l = 0; l < nc; ++l)  // contiguous rows read along w
          for (int64_t w = 0; w < g.W; ++w)
            d[(g.pw + w) * L + l] = static_cast<T>(sp[l * sc + w * sw]);
      }
    }
  });
}

// weight (C, 1, kh, kw) -> dst[cb][i][j][l] with j < kwp, optionally
// flipped in both axes (the input gradient's kernel).
template <typename Tin, typename T>
void pack_weight(const at::Tensor& wt, const Geo& g, bool flip, T* dst) {
  const Tin* s = wt.data_ptr<Tin>();
  const int64_t sc = wt.stride(0), si = wt.stride(2), sj = wt.stride(3);
  std::memset(dst, 0, sizeof(T) * g.CB * g.kh * g.kwp * g.L);
  for (int64_t c = 0; c < g.C; ++c) {
    const int64_t cb = c / g.L, l = c % g.L;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t si_ = flip ? g.kh - 1 - i : i;
        const int64_t sj_ = flip ? g.kw - 1 - j : j;
        dst[((cb * g.kh + i) * g.kwp + j) * g.L + l] =
            static_cast<T>(s[c * sc + si_ * si + sj_ * sj]);
      }
  }
}

// The sliding outer product over one kernel row: every input vector is
// loaded once and meets each (output b, tap jj) pair it belongs to.
//   forward:     acc[b]  += coef[jj] * x[b + jj]   (coef: JB weights)
//   weight grad: acc[jj] += coef[b]  * x[b + jj]   (coef: WB grad vectors)
// The weight grad slides R x rows (R kernel rows) at once, interleaved:
// R * JB independent accumulator chains (acc[r * JB + jj]).
template <int JB, int WB, int R, bool kWgrad, typename T>
inline void slide(typename Vec<T>::type* acc,
                  const typename Vec<T>::type* coef, const T* const* x) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  static_assert(kWgrad || R == 1, "the forward slides one row");
#pragma GCC unroll 64
  for (int t = 0; t < WB + JB - 1; ++t) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const V xv = *reinterpret_cast<const V*>(x[r] + t * L);
#pragma GCC unroll 16
      for (int jj = 0; jj < JB; ++jj) {
        const int b = t - jj;
        if (b < 0 || b >= WB) continue;
        if constexpr (kWgrad) acc[r * JB + jj] += coef[b] * xv;
        else acc[b] += coef[jj] * xv;
      }
    }
  }
}

template <typename T, typename Tout>
inline void store(const typename Vec<T>::type& v, Tout* p, int64_t sc,
                  int64_t nc) {
  constexpr int64_t L = Vec<T>::L;
  const T* lanes = reinterpret_cast<const T*>(&v);
  if (sc == 1 && nc == L) {  // channels_last: one vector
    for (int64_t l = 0; l < L; ++l) p[l] = static_cast<Tout>(lanes[l]);
    return;
  }
  for (int64_t l = 0; l < nc; ++l) p[l * sc] = static_cast<Tout>(lanes[l]);
}

// One output row block: y[n, c-block, h, w0:w0+WB].
template <int JB, int WB, typename T, typename Tout>
void fwd_block(const Geo& g, const T* xp, const T* wp, const T* bias,
               Tout* y, const int64_t* ys, int64_t n, int64_t cb, int64_t h,
               int64_t w0) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V acc[WB];
  V b0 = V{} + T(0);
  if (bias != nullptr) b0 = *reinterpret_cast<const V*>(bias + cb * L);
  for (int b = 0; b < WB; ++b) acc[b] = b0;
  const int64_t i0 = std::max<int64_t>(0, g.ph - h);
  const int64_t i1 = std::min<int64_t>(g.kh, g.H + g.ph - h);
  for (int64_t i = i0; i < i1; ++i) {
    const T* xr = xp + g.row(n, cb, h + i - g.ph) + w0 * L;
    const V* wr = reinterpret_cast<const V*>(
        wp + (cb * g.kh + i) * g.kwp * L);
    for (int64_t q = 0; q < g.nch; ++q) {
      V wv[JB];
      for (int jj = 0; jj < JB; ++jj) wv[jj] = wr[q * JB + jj];
      const T* xq = xr + q * JB * L;
      slide<JB, WB, 1, false, T>(acc, wv, &xq);
    }
  }
  const int64_t c0 = cb * L, nc = std::min<int64_t>(L, g.C - c0);
  Tout* yp = y + n * ys[0] + c0 * ys[1] + h * ys[2];
  const int64_t nw = std::min<int64_t>(WB, g.W - w0);
  for (int64_t b = 0; b < nw; ++b)
    store<T>(acc[b], yp + (w0 + b) * ys[3], ys[1], nc);
}

template <int JB, int WB, typename T, typename Tout>
void fwd_run(const Geo& g, const T* xp, const T* wp, const T* bias,
             at::Tensor& y) {
  Tout* yd = y.data_ptr<Tout>();
  const int64_t ys[4] = {y.stride(0), y.stride(1), y.stride(2), y.stride(3)};
  const int64_t nwb = g.Wr / WB;
  at::parallel_for(0, g.N * g.CB * g.H, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t h = t % g.H, cb = (t / g.H) % g.CB, n = t / g.H / g.CB;
      for (int64_t wb = 0; wb < nwb; ++wb)
        fwd_block<JB, WB, T, Tout>(g, xp, wp, bias, yd, ys, n, cb, h,
                                   wb * WB);
    }
  });
}

// dw[cb][i..i+R)[q-th chunk] += sum over w of g row (n, h) x shifted x rows.
// R = 2 kernel rows at once share the grad vectors and give the FMAs twice
// as many independent accumulator chains.
template <int JB, int WB, int R, typename T>
inline void wgrad_rows(const Geo& g, const T* xp, const T* gr, T* dw,
                       int64_t n, int64_t cb, int64_t h, int64_t i,
                       int64_t q) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V acc[R * JB];
  V* out[R];
  const T* xr[R];
  for (int r = 0; r < R; ++r) {
    out[r] = reinterpret_cast<V*>(dw + ((cb * g.kh + i + r) * g.kwp +
                                        q * JB) * L);
    xr[r] = xp + g.row(n, cb, h + i + r - g.ph) + q * JB * L;
    for (int jj = 0; jj < JB; ++jj) acc[r * JB + jj] = out[r][jj];
  }
  for (int64_t w0 = 0; w0 < g.Wr; w0 += WB) {
    V gv[WB];
    for (int b = 0; b < WB; ++b)
      gv[b] = *reinterpret_cast<const V*>(gr + (w0 + b) * L);
    slide<JB, WB, R, true, T>(acc, gv, xr);
    for (int r = 0; r < R; ++r) xr[r] += WB * L;
  }
  for (int r = 0; r < R; ++r)
    for (int jj = 0; jj < JB; ++jj) out[r][jj] = acc[r * JB + jj];
}

// dw[cb][i][:] for kernel rows i in [i0, i1), summed over n, h, w. Kernel
// rows go in blocks of kRowBlock, each sweeping all grad rows h: the x rows
// it meets (h + block) stay in L1 while h advances.
template <int JB, int WB, typename T>
void wgrad_task(const Geo& g, const T* xp, const T* gp, T* dw, int64_t cb,
                int64_t i0, int64_t i1) {
  constexpr int L = Vec<T>::L;
  constexpr bool kPairs = 2 * JB + WB < 32 && kVecBytes == 64;
  constexpr int64_t kRowBlock = 8;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t ib = i0; ib < i1; ib += kRowBlock)
    for (int64_t h = 0; h < g.H; ++h) {
      // g's column w sits at packed index pw + w (zero beyond W).
      const T* gr = gp + g.row(n, cb, h) + g.pw * L;
      const int64_t lo = std::max(ib, g.ph - h);
      const int64_t hi = std::min({i1, ib + kRowBlock, g.H + g.ph - h});
      for (int64_t q = 0; q < g.nch; ++q) {
        int64_t i = lo;
        if constexpr (kPairs)
          for (; i + 1 < hi; i += 2)
            wgrad_rows<JB, WB, 2, T>(g, xp, gr, dw, n, cb, h, i, q);
        for (; i < hi; ++i)
          wgrad_rows<JB, WB, 1, T>(g, xp, gr, dw, n, cb, h, i, q);
      }
    }
}

template <int JB, int WB, typename T>
void wgrad_run(const Geo& g, const T* xp, const T* gp, T* dw) {
  // Split kernel rows too when there are few channel blocks per thread.
  const int64_t want = 4 * at::get_num_threads();
  const int64_t groups = std::min(g.kh, std::max<int64_t>(
                                           1, (want + g.CB - 1) / g.CB));
  const int64_t per = (g.kh + groups - 1) / groups;
  at::parallel_for(0, g.CB * groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t cb = t / groups, i0 = (t % groups) * per;
      wgrad_task<JB, WB, T>(g, xp, gp, dw, cb, i0,
                            std::min(g.kh, i0 + per));
    }
  });
}

// Calls fn.template operator()<JB, WB>() with g's JB and WB as constants.
template <typename F>
void with_blocks(const Geo& g, F&& fn) {
  const int64_t key = g.JB * 100 + g.WB;
  switch (key) {
#define MMSLAK_CASE(jb, wb)            \
  case jb * 100 + wb:                  \
    fn.template operator()<jb, wb>();  \
    return;
#define MMSLAK_JB(jb) MMSLAK_CASE(jb, kWB)
#define MMSLAK_SHORT(jb) MMSLAK_CASE(jb, 12) MMSLAK_CASE(jb, 14)
    MMSLAK_JB(1) MMSLAK_JB(2) MMSLAK_JB(3) MMSLAK_JB(4) MMSLAK_JB(5)
#if defined(__AVX512F__)
    MMSLAK_JB(6) MMSLAK_JB(7) MMSLAK_JB(8) MMSLAK_JB(9) MMSLAK_JB(10)
    MMSLAK_JB(11) MMSLAK_JB(12) MMSLAK_JB(13)
    MMSLAK_SHORT(1) MMSLAK_SHORT(2) MMSLAK_SHORT(3) MMSLAK_SHORT(4)
    MMSLAK_SHORT(5) MMSLAK_SHORT(6) MMSLAK_SHORT(7)
#endif
#undef MMSLAK_SHORT
#undef MMSLAK_JB
#undef MMSLAK_CASE
  }
  TORCH_CHECK(false, "mmslak dwconv: no kernel for ", g.JB, " taps x ", g.WB,
              " outputs");
}

template <typename Tin, typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& w,
                  const c10::optional<at::Tensor>& bias, at::Tensor& y,
                  bool flip) {
  const Geo g(x, w.size(2), w.size(3), Vec<T>::L);
  auto xp = aligned_buffer<T>(g.N * g.CB * g.H * g.Wp * g.L);
  auto wp = aligned_buffer<T>(g.CB * g.kh * g.kwp * g.L);
  auto bp = aligned_buffer<T>(g.CB * g.L);
  pack_map<Tin, T>(x, g, xp.get());
  pack_weight<Tin, T>(w, g, flip, wp.get());
  const T* bptr = nullptr;
  if (bias.has_value() && bias->defined()) {
    std::memset(bp.get(), 0, sizeof(T) * g.CB * g.L);
    const Tin* bs = bias->data_ptr<Tin>();
    for (int64_t c = 0; c < g.C; ++c)
      bp.get()[c] = static_cast<T>(bs[c * bias->stride(0)]);
    bptr = bp.get();
  }
  with_blocks(g, [&]<int JB, int WB>() {
    fwd_run<JB, WB, T, Tin>(g, xp.get(), wp.get(), bptr, y);
  });
}

template <typename Tin, typename T>
void wgrad_impl(const at::Tensor& grad, const at::Tensor& x, at::Tensor& dw) {
  const Geo g(x, dw.size(2), dw.size(3), Vec<T>::L);
  auto xp = aligned_buffer<T>(g.N * g.CB * g.H * g.Wp * g.L);
  auto gp = aligned_buffer<T>(g.N * g.CB * g.H * g.Wp * g.L);
  auto acc = aligned_buffer<T>(g.CB * g.kh * g.kwp * g.L);
  pack_map<Tin, T>(x, g, xp.get());
  pack_map<Tin, T>(grad, g, gp.get());
  std::memset(acc.get(), 0, sizeof(T) * g.CB * g.kh * g.kwp * g.L);
  with_blocks(g, [&]<int JB, int WB>() {
    wgrad_run<JB, WB, T>(g, xp.get(), gp.get(), acc.get());
  });
  // acc[cb][i][j][l] -> dw (C, 1, kh, kw), in dw's dtype (fp32 or fp64).
  auto* out = dw.data_ptr<T>();
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        out[c * dw.stride(0) + i * dw.stride(2) + j * dw.stride(3)] =
            acc.get()[(((c / g.L) * g.kh + i) * g.kwp + j) * g.L + c % g.L];
}

void check(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(),
              "mmslak dwconv_cpu: CPU tensors expected");
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(0) == x.size(1) &&
                  w.size(1) == 1 && w.size(2) % 2 == 1 && w.size(3) % 2 == 1,
              "mmslak dwconv_cpu: x (N, C, H, W), weight (C, 1, odd, odd)");
  TORCH_CHECK(w.scalar_type() == x.scalar_type(),
              "mmslak dwconv_cpu: x and weight dtypes differ");
}

// y = depthwise same-padded correlation of x with w (+ bias); flip=True
// correlates with the flipped kernel (the input gradient).
void forward(const at::Tensor& x, const at::Tensor& w,
             const c10::optional<at::Tensor>& bias, at::Tensor y,
             bool flip) {
  check(x, w);
  TORCH_CHECK(y.sizes() == x.sizes() && y.scalar_type() == x.scalar_type(),
              "mmslak dwconv_cpu: output must match x");
  if (x.numel() == 0) return;
  if (w.size(3) > w.size(2))  // a wide kernel runs as a tall one, see top
    return forward(x.transpose(2, 3), w.transpose(2, 3), bias,
                   y.transpose(2, 3), flip);
  switch (x.scalar_type()) {
    case at::kFloat: return forward_impl<float, float>(x, w, bias, y, flip);
    case at::kDouble:
      return forward_impl<double, double>(x, w, bias, y, flip);
    case at::kBFloat16:
      return forward_impl<c10::BFloat16, float>(x, w, bias, y, flip);
    default:
      TORCH_CHECK(false, "mmslak dwconv_cpu: unsupported dtype ",
                  x.scalar_type());
  }
}

// dw (C, 1, kh, kw; fp32, or fp64 for fp64 inputs) = sum over n, h, w of
// grad * shifted x.
void weight_grad(const at::Tensor& grad, const at::Tensor& x, at::Tensor dw) {
  TORCH_CHECK(x.device().is_cpu() && grad.device().is_cpu() &&
                  dw.device().is_cpu() && x.dim() == 4 && dw.dim() == 4 &&
                  dw.size(0) == x.size(1) && dw.size(1) == 1 &&
                  dw.size(2) % 2 == 1 && dw.size(3) % 2 == 1,
              "mmslak dwconv_cpu: x (N, C, H, W), dw (C, 1, odd, odd)");
  TORCH_CHECK(grad.sizes() == x.sizes() &&
                  grad.scalar_type() == x.scalar_type(),
              "mmslak dwconv_cpu: grad must match x");
  const bool dbl = x.scalar_type() == at::kDouble;
  TORCH_CHECK(dw.scalar_type() == (dbl ? at::kDouble : at::kFloat),
              "mmslak dwconv_cpu: dw must be fp32 (fp64 for fp64 x)");
  if (x.numel() == 0) {  // an empty sum
    for (int64_t c = 0; c < dw.size(0); ++c)
      for (int64_t i = 0; i < dw.size(2); ++i)
        for (int64_t j = 0; j < dw.size(3); ++j) {
          const int64_t o = c * dw.stride(0) + i * dw.stride(2) +
                            j * dw.stride(3);
          if (dbl) dw.data_ptr<double>()[o] = 0;
          else dw.data_ptr<float>()[o] = 0;
        }
    return;
  }
  if (dw.size(3) > dw.size(2))  // a wide kernel runs as a tall one, see top
    return weight_grad(grad.transpose(2, 3), x.transpose(2, 3),
                       dw.transpose(2, 3));
  switch (x.scalar_type()) {
    case at::kFloat: return wgrad_impl<float, float>(grad, x, dw);
    case at::kDouble: return wgrad_impl<double, double>(grad, x, dw);
    case at::kBFloat16:
      return wgrad_impl<c10::BFloat16, float>(grad, x, dw);
    default:
      TORCH_CHECK(false, "mmslak dwconv_cpu: unsupported dtype ",
                  x.scalar_type());
  }
}

int64_t vector_bytes() { return kVecBytes; }

}  // namespace

TORCH_LIBRARY(mmslak_dwconv, m) {
  m.def("forward(Tensor x, Tensor w, Tensor? bias, Tensor(a!) y, bool flip)"
        " -> ()", &forward);
  m.def("weight_grad(Tensor grad, Tensor x, Tensor(a!) dw) -> ()",
        &weight_grad);
  m.def("vector_bytes() -> int", &vector_bytes);
}
