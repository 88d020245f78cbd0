// The backward pass of pool() on the CPU engine, fused in the FlashAttention style (the GPU's
// two phases, kernels/backward/thread_ops.hpp, on tiles of keys). With the Gaussian log2 scores
// s_ij = ns r2_ij (ns = -log2(e) / (2 h^2), r2 the squared distance), P the weights,
// dp_ij = dout_i . v_j, D_i = dout_i . out_i and dS_ij = P_ij (dp_ij - D_i):
//   1. rows (queries), parallel: ONE streaming pass over the row's visible keys that is also the
//      forward. Relative to a reference distance ref_i (a visible key's r2, the row's nearest up
//      to kRefSlack), w_ij = 2^(ns (r2_ij - ref_i)) and the pass keeps
//        z = sum w,  c = sum w dp,  b = sum w (q_i - k_j),  g = sum w dp (q_i - k_j),
//      so that P_ij = w_ij / z, D_i = c / z and dq_i = -(g - D_i b) / (h^2 z). It saves ref_i,
//      log2 z_i and D_i: 3 floats per row, no output row.
//   2. keys, parallel over blocks of keys: P_ij = 2^(ns (r2_ij - ref_i) - log2 z_i) recomputed,
//      dk_j = 1/h^2 sum_i dS_ij (q_i - k_j), dv_j = sum_i P_ij dout_i and the key's share of
//      dh, sum_i dS_ij r2_ij (dh = 1/h^3 sum_ij dS_ij r2_ij). A block of keys walks the queries
//      tile by tile, so that a tile's queries and row values stay in L1 for every key of it.
// The n x m matrix is never stored. Every output element is one thread's sum in a fixed order
// (a key's sum runs over the query tiles in order whatever the block), and dh sums the keys'
// shares in double in key order: no atomics, and the result does not depend on the thread
// count. d = dv = 1 (the notebook's case and leave-one-out training) has its own single-pass
// loops, as the forward engine does; dv = 1 there factors dp_ij = dout_i v_j out of the sums,
// and phase 2 walks each query tile once for kColKeys keys. Passes over the n x m pairs: two,
// one exponential per pair in each (the forward: one pass, one exponential), exp2_poly5 in both.
//
// Why a reference distance instead of a log-sum-exp of scores: both passes take r2 - ref_i
// before the multiply by ns, so phase 2 may contract ns (r2 - ref_i) - log2 z_i into one FMA and
// still match phase 1's weights to the rounding of small numbers. A saved score-domain
// log-sum-exp would be subtracted from ns r2, which for far keys at small h is ~1e13 with an ulp
// of ~1e6: a contracted and an uncontracted subtraction would then disagree by 2^(1e6).
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/mask.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/cpu/engine.hpp"
#include "src/cpu/tiles.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace attnpool {
namespace {

using detail::kCpuTile;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Phase 1 on d = 1 may weigh a tile against a reference up to this far (log2 units) below the
// tile's best score: every w is then <= 2^16, far from overflowing a tile sum, and the running
// reference serves without a separate min pass. The same slack as the forward's d = 1 tile.
constexpr float kRefSlack = 16.0f;

// Flush-to-zero and denormals-are-zero on this thread while a row or key block runs, restored
// after it. The weights go down to 2^-125 (exp2_poly5's floor), so their products (w v, w (q - k),
// dS = P (dp - D)) fall below 2^-126 on every row that has far keys, and x86 takes a microcode
// assist for each instruction that makes or reads such a number: phase 2 on the notebook's data
// at n = m = 2^14 ran 2.2x slower for it. What is flushed is below 2^-126 per term, under the
// 1e-30 absolute floor of the tolerance even summed over 2^40 pairs; normal results are
// unchanged. Elsewhere (no SSE control register) a no-op.
class flush_denormals {
 public:
#if defined(__SSE__)
  flush_denormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~flush_denormals() { _mm_setcsr(saved_); }
#else
  flush_denormals() = default;
#endif
  flush_denormals(const flush_denormals&) = delete;
  flush_denormals& operator=(const flush_denormals&) = delete;

 private:
#if defined(__SSE__)
  static constexpr unsigned kFtz = 0x8000u, kDaz = 0x0040u;  // MXCSR bits 15 and 6
  unsigned saved_;
#endif
};

// Keys per block in phase 2: the query tile (5 floats a query at d = dv = 1, 20 KiB) is read
// from L1 by each of them. Small, so that m = 129 still spreads over two threads.
constexpr std::size_t kKeyBlock = 8;

// How phase 2 masks a tile of queries for one key: none, one skipped query (leave_one_out),
// or query t sees the key iff key < lens[t] (valid_length).
enum class col_mask { none, skip, by_length };

// ---- d = dv = 1 --------------------------------------------------------------------------------

struct row_sums_d1 {
  float mn, z, a, b, g;  // min r2; sum w, w v, w diff, w v diff (dp = dout_i v_j)
};

// Phase 1, one tile of keys against reference distance ref: w = 2^(ns (r2 - ref)). The skipped
// key (leave_one_out) gets r2 = +inf, so w = 0 and the min ignores it, through a select that
// keeps the loop vectorised; only the tile holding it runs that instantiation. A key much closer
// than ref gives exp2_poly5 an argument past its range (> 127): that lane's garbage (no UB) is
// never used, since the caller then weighs the tile again against the tile's min.
template <bool Skip, bool Dq, bool Min>
ATTNPOOL_MULTIVERSION row_sums_d1 row_tile_d1(float q, const float* k, const float* v,
                                              std::size_t len, float ns, float ref,
                                              std::size_t skip) {
  float mn = kInf, z = 0.0f, a = 0.0f, b = 0.0f, g = 0.0f;
#pragma omp simd reduction(min : mn) reduction(+ : z, a, b, g)
  for (std::size_t j = 0; j < len; ++j) {
    const float diff = q - k[j];
    float r2 = diff * diff;
    if constexpr (Skip) r2 = j == skip ? kInf : r2;
    if constexpr (Min) mn = std::min(mn, r2);
    const float w = detail::exp2_poly5(ns * (r2 - ref));
    const float wv = w * v[j];
    z += w;
    a += wv;
    if constexpr (Dq) {
      b = w * diff + b;
      g = wv * diff + g;
    }
  }
  return {mn, z, a, b, g};
}

// Min = false: the caller knows that no key of the tile is nearer than ref by more than
// kRefSlack (tile_bound_d1), and the tile runs without the min (mn stays +inf).
template <bool Dq, bool Min>
row_sums_d1 row_tile_d1(float q, const float* k, const float* v, std::size_t len, float ns,
                        float ref, std::size_t skip) {
  return skip < len ? row_tile_d1<true, Dq, Min>(q, k, v, len, ns, ref, skip)
                    : row_tile_d1<false, Dq, Min>(q, k, v, len, ns, ref, skip);
}

// Keys per group in phase 2 on d = 1: the group's keys share each query's five loads, and
// their 3 * kColKeys sums are independent chains of adds. (Not a tuning of the result: a key's
// sums run over the queries in the same order whatever group it is in.)
constexpr std::size_t kColKeys = 4;

struct col_sums_d1 {
  float dk, dv, dh;  // sum dS (q - k), sum P dout, sum dS r2
};

// One pair of phase 2: P = 2^(ns (r2 - ref) - log2 z) (0 where the mask hides the pair), and the
// key's three sums. Inlined into the vectorised loop below.
[[gnu::always_inline]] inline void col_pair_d1(float qt, float reft, float l2zt, float dsumt,
                                               float doutt, float kj, float vj, float ns,
                                               bool visible, col_sums_d1& s) {
  const float diff = qt - kj;
  const float r2 = diff * diff;
  float p = detail::exp2_poly5(ns * (r2 - reft) - l2zt);
  p = visible ? p : 0.0f;
  const float ds = p * (vj * doutt - dsumt);
  s.dk = ds * diff + s.dk;
  s.dv = p * doutt + s.dv;
  s.dh = ds * r2 + s.dh;
}

// Phase 2, kColKeys keys (kj, vj; key indices j[g], skipped queries skip[g] relative to the
// tile) against queries [0, len) of a tile (row states ref, l2z, dsum). The argument of the
// exponential is <= 0 up to rounding (P <= 1), so exp2_poly5's range holds.
template <col_mask Mask>
ATTNPOOL_MULTIVERSION void col_tile_d1(const float* kj, const float* vj, const float* q,
                                       const float* ref, const float* l2z, const float* dsum,
                                       const float* dout, std::size_t len, float ns,
                                       const std::size_t* skip, const std::int64_t* lens,
                                       const std::int64_t* j, col_sums_d1* out) {
  static_assert(kColKeys == 4, "the loop below names its four keys' sums");
  const float k0 = kj[0], k1 = kj[1], k2 = kj[2], k3 = kj[3];
  const float v0 = vj[0], v1 = vj[1], v2 = vj[2], v3 = vj[3];
  const std::size_t sk0 = skip[0], sk1 = skip[1], sk2 = skip[2], sk3 = skip[3];
  const std::int64_t j0 = j[0], j1 = j[1], j2 = j[2], j3 = j[3];
  float dk0 = 0.0f, dk1 = 0.0f, dk2 = 0.0f, dk3 = 0.0f, dv0 = 0.0f, dv1 = 0.0f, dv2 = 0.0f,
        dv3 = 0.0f, dh0 = 0.0f, dh1 = 0.0f, dh2 = 0.0f, dh3 = 0.0f;
#pragma omp simd reduction(+ : dk0, dk1, dk2, dk3, dv0, dv1, dv2, dv3, dh0, dh1, dh2, dh3)
  for (std::size_t t = 0; t < len; ++t) {
    const float qt = q[t], rt = ref[t], lt = l2z[t], dt = dsum[t], ot = dout[t];
    const auto vis = [&](std::size_t sk, std::int64_t jj) {
      if constexpr (Mask == col_mask::skip) return t != sk;
      if constexpr (Mask == col_mask::by_length) return jj < lens[t];
      return true;
    };
    col_sums_d1 a0{dk0, dv0, dh0}, a1{dk1, dv1, dh1}, a2{dk2, dv2, dh2}, a3{dk3, dv3, dh3};
    col_pair_d1(qt, rt, lt, dt, ot, k0, v0, ns, vis(sk0, j0), a0);
    col_pair_d1(qt, rt, lt, dt, ot, k1, v1, ns, vis(sk1, j1), a1);
    col_pair_d1(qt, rt, lt, dt, ot, k2, v2, ns, vis(sk2, j2), a2);
    col_pair_d1(qt, rt, lt, dt, ot, k3, v3, ns, vis(sk3, j3), a3);
    dk0 = a0.dk, dv0 = a0.dv, dh0 = a0.dh;
    dk1 = a1.dk, dv1 = a1.dv, dh1 = a1.dh;
    dk2 = a2.dk, dv2 = a2.dv, dh2 = a2.dh;
    dk3 = a3.dk, dv3 = a3.dv, dh3 = a3.dh;
  }
  out[0] = {dk0, dv0, dh0};
  out[1] = {dk1, dv1, dh1};
  out[2] = {dk2, dv2, dh2};
  out[3] = {dk3, dv3, dh3};
}

// ---- any d, dv ----------------------------------------------------------------------------------

// out[t] = sum_c coef_c * bt[c * stride + t0 + t]: dp = dout_i . v_j along a tile, a column at a
// time (each column streams in order; the phase-2 form for several keys is dot_cols_rows).
ATTNPOOL_MULTIVERSION
void dot_cols(const float* coef, const float* bt, std::size_t stride, std::size_t cols,
              std::size_t t0, std::size_t len, float* out) {
  {
    const float c0 = coef[0];
    const float* b0 = bt + t0;
#pragma omp simd
    for (std::size_t t = 0; t < len; ++t) out[t] = c0 * b0[t];
  }
  for (std::size_t c = 1; c < cols; ++c) {
    const float cc = coef[c];
    const float* bc = bt + c * stride + t0;
#pragma omp simd
    for (std::size_t t = 0; t < len; ++t) out[t] = cc * bc[t] + out[t];
  }
}

// The smallest distance of a tile. Sixteen lanes of compare-and-select, as the engine's
// tile_max: GCC 12 leaves an `omp simd reduction(min)` over std::min scalar (a vminss chain, a
// fifth of the backward pass at d = 3). A minimum does not depend on the order.
ATTNPOOL_MULTIVERSION
float min_tile(const float* r, std::size_t len) {
  constexpr std::size_t kL = 16;
  float lanes[kL];
  std::fill_n(lanes, kL, kInf);
  std::size_t t = 0;
  for (; t + kL <= len; t += kL)
    for (std::size_t l = 0; l < kL; ++l) lanes[l] = r[t + l] < lanes[l] ? r[t + l] : lanes[l];
  for (; t < len; ++t) lanes[0] = r[t] < lanes[0] ? r[t] : lanes[0];
  float mn = lanes[0];
  for (std::size_t l = 1; l < kL; ++l) mn = lanes[l] < mn ? lanes[l] : mn;
  return mn;
}

// Phase 1: w[t] = 2^(ns (r[t] - ref)) in place of r, dp[t] -> w[t] dp[t]; returns
// {sum w, sum w dp}.
struct weight_sums {
  float z, c;
};
ATTNPOOL_MULTIVERSION
weight_sums weight_row_tile(float* r, float* dp, std::size_t len, float ns, float ref) {
  float z = 0.0f, c = 0.0f;
#pragma omp simd reduction(+ : z, c)
  for (std::size_t t = 0; t < len; ++t) {
    const float w = detail::exp2_poly5(ns * (r[t] - ref));
    const float wd = w * dp[t];
    r[t] = w;
    dp[t] = wd;
    z += w;
    c += wd;
  }
  return {z, c};
}

// sum_t w[t] (a - b[t]) for one coordinate column: the dq / dk sums.
ATTNPOOL_MULTIVERSION
float weighted_diff_sum(const float* w, float a, const float* b, std::size_t len) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (std::size_t t = 0; t < len; ++t) acc = w[t] * (a - b[t]) + acc;
  return acc;
}

// Both row sums of one coordinate at once: {sum w (a - b), sum wd (a - b)}.
struct pair_sums {
  float w, wd;
};
ATTNPOOL_MULTIVERSION
pair_sums weighted_diff_sums(const float* w, const float* wd, float a, const float* b,
                             std::size_t len) {
  float sw = 0.0f, swd = 0.0f;
#pragma omp simd reduction(+ : sw, swd)
  for (std::size_t t = 0; t < len; ++t) {
    const float diff = a - b[t];
    sw = w[t] * diff + sw;
    swd = wd[t] * diff + swd;
  }
  return {sw, swd};
}

// Phase 2: p[t] = P of query t (masked: 0) and dp[t] -> dS = p (dp - D) in place; returns
// sum_t dS r2 (the key's share of dh over the tile).
template <col_mask Mask>
ATTNPOOL_MULTIVERSION float weight_col_tile(const float* r, const float* ref, const float* l2z,
                                            const float* dsum, float* p, float* dp,
                                            std::size_t len, float ns, std::size_t skip,
                                            const std::int64_t* lens, std::int64_t j) {
  float dh = 0.0f;
#pragma omp simd reduction(+ : dh)
  for (std::size_t t = 0; t < len; ++t) {
    float pt = detail::exp2_poly5(ns * (r[t] - ref[t]) - l2z[t]);
    if constexpr (Mask == col_mask::skip) pt = t == skip ? 0.0f : pt;
    if constexpr (Mask == col_mask::by_length) pt = j < lens[t] ? pt : 0.0f;
    const float ds = pt * (dp[t] - dsum[t]);
    p[t] = pt;
    dp[t] = ds;
    dh = ds * r[t] + dh;
  }
  return dh;
}

template <class F>
decltype(auto) with_col_mask(col_mask mk, F&& f) {
  switch (mk) {
    case col_mask::skip:
      return f(std::integral_constant<col_mask, col_mask::skip>{});
    case col_mask::by_length:
      return f(std::integral_constant<col_mask, col_mask::by_length>{});
    case col_mask::none:
      break;
  }
  return f(std::integral_constant<col_mask, col_mask::none>{});
}

// ---- the two phases ----------------------------------------------------------------------------

// Per row, what phase 2 needs: the reference distance, log2 z and D.
struct row_states {
  std::vector<float> ref, l2z, dsum;
  explicit row_states(std::size_t n) : ref(n), l2z(n), dsum(n) {}
};

struct problem {
  const_view q, k, v, dout;
  detail::mask_rule rule;
  float ns;       // the Gaussian log2 score constant, -log2(e) / (2 h^2)
  double inv_h2;  // 1 / h^2
  unsigned threads;
};

// The reference distance a row starts from: its first visible key's (phase 1 on d = 1 then
// moves it down to within kRefSlack of the row's nearest key).
std::size_t first_visible(const detail::key_range& rm) { return rm.skip == 0 ? 1 : 0; }

// Per tile of kCpuTile keys, its smallest and largest key.
std::vector<float> tile_bounds_d1(const std::vector<float>& kt) {
  std::vector<float> r;
  for (std::size_t j0 = 0; j0 < kt.size(); j0 += kCpuTile) {
    const auto [lo, hi] = std::minmax_element(kt.begin() + static_cast<std::ptrdiff_t>(j0),
                                              kt.begin() + static_cast<std::ptrdiff_t>(
                                                  std::min(kt.size(), j0 + kCpuTile)));
    r.push_back(*lo);
    r.push_back(*hi);
  }
  return r;
}

// The smallest r2 from q to a key in [lo, hi], with the loop's own float operations (monotone,
// so no key of the tile computes a smaller r2).
float tile_bound_d1(float q, const float* lohi) {
  const float diff = q < lohi[0] ? q - lohi[0] : (q > lohi[1] ? q - lohi[1] : 0.0f);
  return diff * diff;
}

template <bool Dq>
void rows_d1(const problem& pb, const std::vector<float>& kt, const std::vector<float>& vt,
             row_states& st, mutable_view dq) {
  const std::size_t n = pb.q.rows, m = pb.k.rows;
  const float ns = pb.ns;
  const std::vector<float> bounds = tile_bounds_d1(kt);
  detail::parallel_rows(n, m * 2, pb.threads, 0, [&](std::size_t i, float*) {
    [[maybe_unused]] const flush_denormals ftz;
    const detail::key_range rm = pb.rule.row(i, m);
    const float qi = pb.q(i, 0);
    const float d0 = qi - kt[first_visible(rm)];
    float ref = d0 * d0;
    float z = 0.0f, a = 0.0f, b = 0.0f, g = 0.0f;
    for (std::size_t j0 = 0; j0 < rm.limit; j0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, rm.limit - j0);
      const std::size_t skip = rm.skip - j0;  // wraps to a huge value below j0: none skipped
      const float* kj = kt.data() + j0;
      const float* vj = vt.data() + j0;
      row_sums_d1 t;
      if (ns * (tile_bound_d1(qi, bounds.data() + 2 * (j0 / kCpuTile)) - ref) <= kRefSlack) {
        t = row_tile_d1<Dq, false>(qi, kj, vj, len, ns, ref, skip);
      } else {
        t = row_tile_d1<Dq, true>(qi, kj, vj, len, ns, ref, skip);
      }
      if (!(ns * (t.mn - ref) <= kRefSlack)) {
        // A much closer key: move the row onto it and weigh the tile again.
        const float f = detail::exp2_poly(ns * (ref - t.mn));
        z *= f;
        a *= f;
        b *= f;
        g *= f;
        ref = t.mn;
        t = row_tile_d1<Dq, true>(qi, kj, vj, len, ns, ref, skip);
      }
      z += t.z;
      a += t.a;
      b += t.b;
      g += t.g;
    }
    // z >= 1: ref is a visible key's distance, so the nearest key weighs >= 2^0.
    const double zd = z, dout = pb.dout(i, 0);
    const double dsum = dout * static_cast<double>(a) / zd;
    st.ref[i] = ref;
    st.l2z[i] = detail::log2_accurate(z);
    st.dsum[i] = static_cast<float>(dsum);
    if constexpr (Dq)
      dq(i, 0) = static_cast<float>(-pb.inv_h2 / zd *
                                    (dout * static_cast<double>(g) - dsum * static_cast<double>(b)));
  });
}

template <bool Dq>
void rows_generic(const problem& pb, const std::vector<float>& kt, const std::vector<float>& vt,
                  row_states& st, mutable_view dq) {
  const std::size_t n = pb.q.rows, m = pb.k.rows, d = pb.q.cols, dv = pb.v.cols;
  const float ns = pb.ns;
  // Scratch: distances / weights, dp / w dp, and the b and g accumulators.
  detail::parallel_rows(n, m * (2 * d + dv), pb.threads, 2 * kCpuTile + 2 * d,
                        [&](std::size_t i, float* buf) {
    [[maybe_unused]] const flush_denormals ftz;
    float *r = buf, *dp = r + kCpuTile, *b = dp + kCpuTile, *g = b + d;
    std::fill(b, b + 2 * d, 0.0f);
    const detail::key_range rm = pb.rule.row(i, m);
    const float* qi = pb.q.row(i);
    float ref = kInf, z = 0.0f, c = 0.0f;
    for (std::size_t j0 = 0; j0 < rm.limit; j0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, rm.limit - j0);
      detail::dist_tile(qi, kt.data(), m, d, j0, len, r);
      if (rm.skips_in(j0, len)) r[rm.skip - j0] = kInf;
      const float mn = min_tile(r, len);
      if (mn == kInf) continue;  // a one-key tile holding only the skipped key
      if (mn < ref) {  // the row's exact nearest key so far becomes the reference
        if (ref != kInf) {
          const float f = detail::exp2_poly(ns * (ref - mn));
          z *= f;
          c *= f;
          for (std::size_t e = 0; e < 2 * d; ++e) b[e] *= f;
        }
        ref = mn;
      }
      dot_cols(pb.dout.row(i), vt.data(), m, dv, j0, len, dp);
      const weight_sums s = weight_row_tile(r, dp, len, ns, ref);
      z += s.z;
      c += s.c;
      if constexpr (Dq) {
        for (std::size_t e = 0; e < d; ++e) {
          const pair_sums ps = weighted_diff_sums(r, dp, qi[e], kt.data() + e * m + j0, len);
          b[e] += ps.w;
          g[e] += ps.wd;
        }
      }
    }
    const double zd = z;
    const double dsum = static_cast<double>(c) / zd;
    st.ref[i] = ref;
    st.l2z[i] = detail::log2_accurate(z);
    st.dsum[i] = static_cast<float>(dsum);
    if constexpr (Dq)
      for (std::size_t e = 0; e < d; ++e)
        dq(i, e) = static_cast<float>(-pb.inv_h2 / zd *
                                      (static_cast<double>(g[e]) - dsum * static_cast<double>(b[e])));
  });
}

// Phase 2's masks, read by key: the skipped query of leave_one_out, and for valid_length the
// counts as signed integers (a compare that vectorises) with each query tile's smallest and
// largest count, so that a key beyond every count of a tile skips it and a key below every
// count runs the unmasked loop.
struct col_masks {
  const detail::mask_rule& rule;
  std::vector<std::int64_t> lens, tile_min, tile_max;

  col_masks(const detail::mask_rule& r, std::size_t n) : rule(r) {
    if (!r.by_length()) return;
    lens.assign(r.valid_lens, r.valid_lens + n);
    const std::size_t tiles = (n + kCpuTile - 1) / kCpuTile;
    tile_min.assign(tiles, std::numeric_limits<std::int64_t>::max());
    tile_max.assign(tiles, 0);
    for (std::size_t i = 0; i < n; ++i) {
      tile_min[i / kCpuTile] = std::min(tile_min[i / kCpuTile], lens[i]);
      tile_max[i / kCpuTile] = std::max(tile_max[i / kCpuTile], lens[i]);
    }
  }

  // The mask of key j on query tile [i0, i0 + len); false: no query of the tile sees key j.
  bool of(std::size_t j, std::size_t i0, std::size_t len, col_mask& mk, std::size_t& skip) const {
    skip = rule.skipped_query(j) - i0;
    mk = skip < len ? col_mask::skip : col_mask::none;
    if (!lens.empty()) {
      const auto jj = static_cast<std::int64_t>(j);
      if (jj >= tile_max[i0 / kCpuTile]) return false;
      if (jj >= tile_min[i0 / kCpuTile]) mk = col_mask::by_length;
    }
    return true;
  }
  const std::int64_t* lens_at(std::size_t i0) const {
    return lens.empty() ? nullptr : lens.data() + i0;
  }
};

// Writes key j's gradients from its sums (dk_sum = sum dS (q - k), dh_sum = sum dS r2).
void write_key(const problem& pb, const pool_gradients& g, std::size_t j, const float* dk_sum,
               const float* dv_sum, float dh_sum, std::vector<double>& dh_keys) {
  if (g.keys.data != nullptr)
    for (std::size_t e = 0; e < pb.k.cols; ++e)
      g.keys(j, e) = static_cast<float>(pb.inv_h2 * static_cast<double>(dk_sum[e]));
  if (g.values.data != nullptr)
    for (std::size_t e = 0; e < pb.v.cols; ++e) g.values(j, e) = dv_sum[e];
  dh_keys[j] = dh_sum;
}

void cols_d1(const problem& pb, const pool_gradients& g, const row_states& st,
             std::vector<double>& dh_keys) {
  static_assert(kKeyBlock % kColKeys == 0, "a block holds whole groups of keys");
  const std::size_t n = pb.q.rows, m = pb.k.rows;
  const std::vector<float> qt = detail::pack_columns(pb.q), dt = detail::pack_columns(pb.dout);
  const col_masks masks(pb.rule, n);
  const std::size_t blocks = (m + kKeyBlock - 1) / kKeyBlock;
  detail::parallel_rows(blocks, n * 2 * kKeyBlock, pb.threads, 3 * kKeyBlock,
                        [&](std::size_t blk, float* acc) {
    [[maybe_unused]] const flush_denormals ftz;
    const std::size_t jb = blk * kKeyBlock, je = std::min(m, jb + kKeyBlock);
    std::fill(acc, acc + 3 * kKeyBlock, 0.0f);
    for (std::size_t i0 = 0; i0 < n; i0 += kCpuTile) {
      const std::size_t len = std::min(kCpuTile, n - i0);
      for (std::size_t jg = jb; jg < je; jg += kColKeys) {
        // A group past the last key repeats it; those lanes' sums are dropped.
        float kj[kColKeys], vj[kColKeys];
        std::size_t skip[kColKeys];
        std::int64_t jj[kColKeys];
        col_mask mk = col_mask::none;
        bool any = false;
        for (std::size_t e = 0; e < kColKeys; ++e) {
          const std::size_t j = std::min(jg + e, je - 1);
          kj[e] = pb.k(j, 0);
          vj[e] = pb.v(j, 0);
          jj[e] = static_cast<std::int64_t>(j);
          col_mask mj{};
          const bool sees = masks.of(j, i0, len, mj, skip[e]);
          any = any || sees;
          // Masks are of one kind: skip and by_length never meet in one call. A key that no
          // query of the tile sees takes the by_length loop, whose compare zeroes it.
          if (mj != col_mask::none || !sees) mk = masks.rule.by_length() ? col_mask::by_length : mj;
        }
        if (!any) continue;
        col_sums_d1 s[kColKeys];
        with_col_mask(mk, [&](auto mc) {
          col_tile_d1<decltype(mc)::value>(kj, vj, qt.data() + i0, st.ref.data() + i0,
                                           st.l2z.data() + i0, st.dsum.data() + i0,
                                           dt.data() + i0, len, pb.ns, skip, masks.lens_at(i0),
                                           jj, s);
        });
        for (std::size_t e = 0; e < kColKeys && jg + e < je; ++e) {
          float* a = acc + 3 * (jg + e - jb);
          a[0] += s[e].dk;
          a[1] += s[e].dv;
          a[2] += s[e].dh;
        }
      }
    }
    for (std::size_t j = jb; j < je; ++j) {
      const float* a = acc + 3 * (j - jb);
      write_key(pb, g, j, a, a + 1, a[2], dh_keys);
    }
  });
}

void cols_generic(const problem& pb, const pool_gradients& g, const row_states& st,
                  std::vector<double>& dh_keys) {
  const std::size_t n = pb.q.rows, m = pb.k.rows, d = pb.q.cols, dv = pb.v.cols;
  const std::vector<float> qt = detail::pack_columns(pb.q), dt = detail::pack_columns(pb.dout);
  const col_masks masks(pb.rule, n);
  const std::size_t blocks = (m + kKeyBlock - 1) / kKeyBlock;
  const std::size_t per_key = d + dv + 1;  // dk, dv and dh sums of one key
  const bool wide = detail::cpu_wide_tiles();
  // Per block: r, then each key's p and dp / dS over a tile, its dv sums of the tile, and acc.
  const std::size_t scratch =
      kCpuTile + 2 * kKeyBlock * kCpuTile + kKeyBlock * dv + per_key * kKeyBlock;
  detail::parallel_rows(
      blocks, n * (2 * d + 2 * dv) * kKeyBlock, pb.threads, scratch,
      [&](std::size_t blk, float* buf) {
        [[maybe_unused]] const flush_denormals ftz;
        float* r = buf;
        float* pk = r + kCpuTile;                  // key e's p at pk + e * kCpuTile
        float* dsk = pk + kKeyBlock * kCpuTile;    // key e's dp, then dS, at dsk + e * kCpuTile
        float* sums = dsk + kKeyBlock * kCpuTile;  // kKeyBlock x dv: a tile's dv sums
        float* acc = sums + kKeyBlock * dv;
        const std::size_t jb = blk * kKeyBlock, je = std::min(m, jb + kKeyBlock), keys = je - jb;
        const float* vrows[kKeyBlock];
        float* dp_out[kKeyBlock];
        for (std::size_t e = 0; e < keys; ++e) {
          vrows[e] = pb.v.row(jb + e);
          dp_out[e] = dsk + e * kCpuTile;
        }
        std::fill(acc, acc + per_key * kKeyBlock, 0.0f);
        for (std::size_t i0 = 0; i0 < n; i0 += kCpuTile) {
          const std::size_t len = std::min(kCpuTile, n - i0);
          // dp = dout_i . v_j for the block's keys at once (each as dot_cols computes it alone).
          detail::dot_cols_rows(vrows, keys, dt.data(), n, dv, i0, len, wide, dp_out);
          const float* seen_p[kKeyBlock];
          std::size_t seen[kKeyBlock];
          std::size_t n_seen = 0;
          for (std::size_t j = jb; j < je; ++j) {
            col_mask mk{};
            std::size_t skip = 0;
            if (!masks.of(j, i0, len, mk, skip)) continue;
            float* a = acc + per_key * (j - jb);  // dk[d], dv[dv], dh
            const float* kj = pb.k.row(j);
            float* p = pk + (j - jb) * kCpuTile;
            float* ds = dsk + (j - jb) * kCpuTile;
            detail::dist_tile(kj, qt.data(), n, d, i0, len, r);
            a[d + dv] += with_col_mask(mk, [&](auto mc) {
              return weight_col_tile<decltype(mc)::value>(
                  r, st.ref.data() + i0, st.l2z.data() + i0, st.dsum.data() + i0, p, ds, len, pb.ns,
                  skip, masks.lens_at(i0), static_cast<std::int64_t>(j));
            });
            for (std::size_t c = 0; c < d; ++c)  // sum dS (q - k) = -sum dS (k - q)
              a[c] -= weighted_diff_sum(ds, kj[c], qt.data() + c * n + i0, len);
            seen_p[n_seen] = p;
            seen[n_seen++] = j - jb;
          }
          // dv_j += sum_t p_jt dout_t for the keys the tile holds queries of, in one pass.
          detail::dot_tile_rows(seen_p, n_seen, dt.data() + i0, n, len, dv, wide, sums);
          for (std::size_t e = 0; e < n_seen; ++e)
            for (std::size_t c = 0; c < dv; ++c) acc[per_key * seen[e] + d + c] += sums[e * dv + c];
        }
        for (std::size_t j = jb; j < je; ++j) {
          const float* a = acc + per_key * (j - jb);
          write_key(pb, g, j, a, a + d, a[d + dv], dh_keys);
        }
      });
}

}  // namespace

void detail::cpu_backward(const_view q, const_view k, const_view v, const_view dout,
                          const pool_gradients& g, const pool_params& params, unsigned threads) {
  const std::size_t n = q.rows, d = q.cols, dv = v.cols;
  const problem pb{q,
                   k,
                   v,
                   dout,
                   detail::mask_rule_of(params),
                   static_cast<float>(-detail::gaussian_log2_scale(params.bandwidth)),
                   1.0 / (params.bandwidth * params.bandwidth),
                   threads};
  const bool d1 = d == 1 && dv == 1;

  // 1. Rows: the forward's normalisers, D, and dq.
  row_states st(n);
  {
    const std::vector<float> kt = detail::pack_columns(k), vt = detail::pack_columns(v);
    const bool want_dq = g.queries.data != nullptr;
    if (d1 && want_dq) rows_d1<true>(pb, kt, vt, st, g.queries);
    if (d1 && !want_dq) rows_d1<false>(pb, kt, vt, st, g.queries);
    if (!d1 && want_dq) rows_generic<true>(pb, kt, vt, st, g.queries);
    if (!d1 && !want_dq) rows_generic<false>(pb, kt, vt, st, g.queries);
  }

  // 2. Keys: dk, dv and dh.
  if (g.keys.data == nullptr && g.values.data == nullptr && g.bandwidth == nullptr) return;
  std::vector<double> dh_keys(k.rows, 0.0);
  if (d1) {
    cols_d1(pb, g, st, dh_keys);
  } else {
    cols_generic(pb, g, st, dh_keys);
  }
  if (g.bandwidth != nullptr) {
    double dh = 0.0;
    for (double x : dh_keys) dh += x;
    *g.bandwidth = dh * pb.inv_h2 / params.bandwidth;
  }
}

}  // namespace attnpool
