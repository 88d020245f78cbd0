// The per-row and per-key work of the fused backward pass, written once as __host__ __device__
// code: the CUDA agents (kernels/backward/agent.cuh) run one call per thread, and the host test
// tests/learn/test_backward_agent.cpp runs the very same functions on the CPU against the fp64
// oracle, so the GPU's arithmetic is checked in CI without a GPU (up to the hardware exp2 and
// log2, which the host replaces with the shared exp2_poly and std::log2).
//
// Row phase (one query row i), a single streaming pass over the row's visible keys. With
// w_ij = 2^(s2_ij - mx) relative to the running maximum mx, it keeps
//   z = sum w,  c = sum w dp,  rr = sum w r2,  qr = sum w dp r2,
//   b = sum w (q_i - k_j),  g = sum w dp (q_i - k_j)                 (b, g: d-vectors)
// and rescales them all when mx grows (the online softmax of detail::online_softmax). At the
// end P_ij = w_ij / z, so
//   lse2_i = mx + log2 z,  D_i = c / z,  dq_i = -(g - D_i b) / (h^2 z),  dh_i = (qr - D_i rr) / z
// (dS_ij = P_ij (dp_ij - D_i) summed against (q_i - k_j) and r2_ij). The subtraction g - D_i b
// loses at most eps32 * sum_j P_ij (|dp_ij| + |D_i|) |q_i - k_j|, which is the oracle's own
// error scale for dq (learn.hpp, reference::gradients::dq_scale).
//
// Key phase (one key j, one window of value columns): P_ij = 2^(s2_ij - lse2_i) from the saved
// log-sum-exp, dS_ij = P_ij (dp_ij - D_i); dk_j = sum_i dS_ij (q_i - k_j) / h^2 and
// dv_j = sum_i P_ij dout_i. The score is subtracted with sub_rn (no FMA contraction): a
// contracted score_constant * r2 - lse2 would not match the lse2 computed from rounded scores,
// which matters for scores of -1e13 (far keys at small h).
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include "kernels/backward/params.hpp"

#include <cmath>
#include <cstddef>

namespace attnpool::kernels {

namespace backward_detail {

using detail::fma_hd;
using detail::ldg;
using detail::log2_accurate;
using detail::max_hd;
using detail::sub_rn;

/// The first d coordinates of a row, zero-padded to D (padding leaves distances unchanged).
template <int D>
ATTNPOOL_HD void load_row(const float* src, int d, float (&x)[D]) {
  ATTNPOOL_UNROLL
  for (int c = 0; c < D; ++c) x[c] = c < d ? ldg(src + c) : 0.0f;
}

/// dout_i . v_j summed in column order (the same order in both phases).
ATTNPOOL_HD float dot_row(const float* x, const float* y, int cols) {
  float acc = 0.0f;
  for (int c = 0; c < cols; ++c) acc = fma_hd(ldg(x + c), ldg(y + c), acc);
  return acc;
}

/// dp_ij = dout_i . v_j; kDv1: a single product, x0 = dout_i[0] or v_j[0] already loaded.
template <bool kDv1>
ATTNPOOL_HD float dot_dout_v(const float* dout_i, const float* v_j, float x0, const float* other,
                             int dv) {
  // x0 * other[0] is the same product as dout_i[0] * v_j[0] (multiplication commutes).
  return kDv1 ? x0 * ldg(other) : dot_row(dout_i, v_j, dv);
}

}  // namespace backward_detail

/// The row phase's running sums of one query row over the keys seen so far (see the file
/// comment): the online-softmax state and c, rr, qr, b, g relative to its maximum.
template <int D>
struct row_sums {
  detail::online_softmax softmax;
  float c = 0.0f, rr = 0.0f, qr = 0.0f;
  float b[D], g[D];

  ATTNPOOL_HD row_sums() {
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) b[e] = g[e] = 0.0f;
  }
  /// Every sum times f (the rescale when the maximum grows).
  ATTNPOOL_HD void scale(float f) {
    c *= f;
    rr *= f;
    qr *= f;
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) {
      b[e] *= f;
      g[e] *= f;
    }
  }
  /// Adds the sums of a disjoint set of keys (another key split of the same row), both rescaled
  /// onto the common maximum; an empty state (no key seen) is the identity.
  ATTNPOOL_HD void merge(const row_sums& o) {
    const detail::rescale r = softmax.merge(o.softmax);
    using detail::fma_hd;
    c = fma_hd(o.c, r.other, c * r.self);
    rr = fma_hd(o.rr, r.other, rr * r.self);
    qr = fma_hd(o.qr, r.other, qr * r.self);
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) {
      b[e] = fma_hd(o.b[e], r.other, b[e] * r.self);
      g[e] = fma_hd(o.g[e], r.other, g[e] * r.self);
    }
  }
};

/// Keys and values in global memory (the untiled kernels, the merge-free host loops).
struct global_key_source {
  const backward_args& a;
  template <int D>
  ATTNPOOL_HD void key(std::size_t j, float (&kj)[D]) const {
    backward_detail::load_row<D>(a.k + j * a.ldk, a.d, kj);
  }
  /// dp_ij = dout_i . v_j (dout0 = dout_i[0]).
  template <bool kDv1>
  ATTNPOOL_HD float dp(std::size_t j, const float* dout_i, float dout0) const {
    const float* vj = a.v + j * a.ldv;
    return backward_detail::dot_dout_v<kDv1>(dout_i, vj, dout0, vj, a.dv);
  }
};

/// A tile of keys [j0, j0 + len) staged by load_key_tile (shared memory on the GPU): D floats
/// per key, zero past the problem's d and m, and with dv == 1 the values; with dv > 1 the
/// values are read from global memory as global_key_source reads them.
template <int D>
struct tile_key_source {
  const backward_args& a;
  const float* k;  // len x D
  const float* v;  // len (dv == 1)
  std::size_t j0;
  ATTNPOOL_HD void key(std::size_t j, float (&kj)[D]) const {
    const float* row = k + (j - j0) * D;
    ATTNPOOL_UNROLL
    for (int c = 0; c < D; ++c) kj[c] = row[c];
  }
  template <bool kDv1>
  ATTNPOOL_HD float dp(std::size_t j, const float* dout_i, float dout0) const {
    if constexpr (kDv1) {
      return dout0 * v[j - j0];  // the product global_key_source forms, v_j[0] * dout_i[0]
    } else {
      return global_key_source{a}.dp<false>(j, dout_i, dout0);
    }
  }
};

/// Thread t of nt stages keys [j0, j0 + len) into k (len x D, zero-padded) and, with dv == 1,
/// their values into v. The same code loads the GPU's shared-memory tile and the host tests'.
template <int D, bool kDv1>
ATTNPOOL_HD void load_key_tile(const backward_args& a, std::size_t j0, int len, float* k, float* v,
                               int t, int nt) {
  using backward_detail::ldg;
  for (int e = t; e < len * D; e += nt) {
    const std::size_t j = j0 + static_cast<std::size_t>(e / D);
    const int c = e % D;
    k[e] = j < a.m && c < a.d ? ldg(a.k + j * a.ldk + c) : 0.0f;
  }
  if constexpr (kDv1) {
    for (int r = t; r < len; r += nt) {
      const std::size_t j = j0 + static_cast<std::size_t>(r);
      v[r] = j < a.m ? ldg(a.v + j * a.ldv) : 0.0f;
    }
  }
}

/// One chunk of accumulate_row: keys [j0, j0 + kChunk) of the row, those below `end` that the
/// mask leaves live. kFull: the caller checked that every key of the chunk is live, so no key
/// takes the selects (the common chunk; the same operations on the same keys otherwise).
template <int D, bool kDv1, bool kFull, class Keys>
ATTNPOOL_HD void accumulate_chunk(const float (&qi)[D], const float* dout_i, float dout0,
                                  std::size_t j0, std::size_t end, std::size_t held,
                                  const detail::key_range& vis, const Keys& keys,
                                  const detail::gaussian_log2_score& score, row_sums<D>& st) {
  using namespace backward_detail;
  constexpr int kC = backward_traits<D>::kChunk;
  float s[kC], dp[kC];
  // Pass 1 over the chunk: scores (masked and past-the-end keys -inf) and dp.
  ATTNPOOL_UNROLL
  for (int t = 0; t < kC; ++t) {
    const std::size_t j = j0 + static_cast<std::size_t>(t);
    const bool live = kFull || (j < end && vis.sees(j));
    const std::size_t jj = live ? j : held;  // dead keys read a held one and are dropped
    float kj[D];
    keys.key(jj, kj);
    s[t] = live ? score(detail::squared_distance<D>(qi, kj)) : -INFINITY;
    dp[t] = keys.template dp<kDv1>(jj, dout_i, dout0);
  }
  float cmax = s[0];
  ATTNPOOL_UNROLL
  for (int t = 1; t < kC; ++t) cmax = max_hd(cmax, s[t]);
  if (cmax == -INFINITY) return;  // every key of the chunk masked: nothing to add
  // Raise the running maximum first (one merge, two exp2 per chunk), so that the chunk's
  // weights are taken relative to it directly: one exp2 per pair.
  st.scale(st.softmax.merge(detail::online_softmax{cmax, 0.0f}).self);
  // Pass 2: the weights and the sums; the key rows are read again (L1 or shared-memory hits
  // on the GPU) and give bitwise the same distances.
  ATTNPOOL_UNROLL
  for (int t = 0; t < kC; ++t) {
    const std::size_t j = j0 + static_cast<std::size_t>(t);
    const bool live = kFull || (j < end && vis.sees(j));
    const std::size_t jj = live ? j : held;
    float kj[D];
    keys.key(jj, kj);
    const float r2 = detail::squared_distance<D>(qi, kj);
    const float w = live ? detail::fast_exp2(sub_rn(s[t], st.softmax.max)) : 0.0f;
    const float wd = w * dp[t];
    st.softmax.sum += w;  // the state's invariant: sum of 2^(s - max) over the keys seen
    st.c += wd;
    st.rr = fma_hd(w, r2, st.rr);
    st.qr = fma_hd(wd, r2, st.qr);
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) {
      const float diff = qi[e] - kj[e];
      st.b[e] = fma_hd(w, diff, st.b[e]);
      st.g[e] = fma_hd(wd, diff, st.g[e]);
    }
  }
}

/// Row phase, the keys [j_begin, j_end) of query row i (j_begin a multiple of kChunk) added to
/// st, from `keys` (a global_key_source, or a tile_key_source holding those keys). The chunks
/// sit at the same key indices whatever the range, so splitting the keys changes only the
/// merge.
template <int D, bool kDv1, class Keys>
ATTNPOOL_HD void accumulate_row(const backward_args& a, std::size_t i, const float (&qi)[D],
                                const float* dout_i, float dout0, std::size_t j_begin,
                                std::size_t j_end, const Keys& keys, row_sums<D>& st) {
  constexpr int kC = backward_traits<D>::kChunk;
  const detail::gaussian_log2_score score{a.score_constant};
  const detail::key_range vis = a.mask.row(i, a.m);
  const std::size_t end = j_end < vis.limit ? j_end : vis.limit;
  for (std::size_t j0 = j_begin; j0 < end; j0 += kC) {
    if (j0 + kC <= end && !vis.skips_in(j0, kC)) {
      accumulate_chunk<D, kDv1, true>(qi, dout_i, dout0, j0, end, j_begin, vis, keys, score, st);
    } else {
      accumulate_chunk<D, kDv1, false>(qi, dout_i, dout0, j0, end, j_begin, vis, keys, score, st);
    }
  }
}

/// Row phase, the end of row i: lse2, D_i and, when asked, dq row i and the row's share of dh
/// from the sums over all its keys. Every row sees at least one key (validated on the host).
template <int D>
ATTNPOOL_HD void finish_row(const backward_args& a, std::size_t i, const row_sums<D>& st) {
  using namespace backward_detail;
  // z >= 1 (the maximum's own weight is 2^0) and finite.
  const double z = static_cast<double>(st.softmax.sum);
  const float dsum = static_cast<float>(static_cast<double>(st.c) / z);
  a.lse2[i] = st.softmax.max + log2_accurate(st.softmax.sum);
  a.dsum[i] = dsum;
  if (a.dq != nullptr) {
    const double f = -a.inv_h2 / z;
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e)  // constant indices after unrolling keep b, g in registers
      if (e < a.d)
        a.dq[i * a.lddq + e] =
            static_cast<float>(f * (static_cast<double>(st.g[e]) -
                                    static_cast<double>(dsum) * static_cast<double>(st.b[e])));
  }
  if (a.dh_rows != nullptr) {
    a.dh_rows[i] = static_cast<float>(
        (static_cast<double>(st.qr) - static_cast<double>(dsum) * static_cast<double>(st.rr)) / z);
  }
}

/// Row sums as stored between the tiled rows kernel and its merge: max, z, c, rr, qr, b, g
/// (backward_tiled_traits<D>::kRowPartial floats).
template <int D>
ATTNPOOL_HD void store_row_sums(float* dst, const row_sums<D>& st) {
  dst[0] = st.softmax.max;
  dst[1] = st.softmax.sum;
  dst[2] = st.c;
  dst[3] = st.rr;
  dst[4] = st.qr;
  ATTNPOOL_UNROLL
  for (int e = 0; e < D; ++e) {
    dst[5 + e] = st.b[e];
    dst[5 + D + e] = st.g[e];
  }
}

template <int D>
ATTNPOOL_HD row_sums<D> load_row_sums(const float* src) {
  row_sums<D> st;
  st.softmax.max = src[0];
  st.softmax.sum = src[1];
  st.c = src[2];
  st.rr = src[3];
  st.qr = src[4];
  ATTNPOOL_UNROLL
  for (int e = 0; e < D; ++e) {
    st.b[e] = src[5 + e];
    st.g[e] = src[5 + D + e];
  }
  return st;
}

/// Row i's partial sums of ranges 0, 1, ..., splits - 1 (range s at partials + (s n + i) *
/// kRowPartial) merged in that order, then finished as finish_row does.
template <int D>
ATTNPOOL_HD void finish_row_splits(const backward_args& a, std::size_t i, std::size_t splits,
                                   const float* partials) {
  constexpr std::size_t kP = backward_tiled_traits<D>::kRowPartial;
  row_sums<D> st = load_row_sums<D>(partials + i * kP);
  for (std::size_t s = 1; s < splits; ++s)
    st.merge(load_row_sums<D>(partials + (s * a.n + i) * kP));
  finish_row<D>(a, i, st);
}

/// Query row i's coordinates (zero-padded to D), its dout row and dout_i[0].
template <int D>
struct query_row {
  float q[D];
  const float* dout;
  float dout0;
  ATTNPOOL_HD query_row(const backward_args& a, std::size_t i) : dout(a.dout + i * a.lddo) {
    backward_detail::load_row<D>(a.q + i * a.ldq, a.d, q);
    dout0 = backward_detail::ldg(dout);
  }
};

/// Row phase for query row i over all its keys, in one thread (see the file comment): writes
/// a.lse2[i], a.dsum[i], and when asked dq row i and a.dh_rows[i].
template <int D, bool kDv1>
ATTNPOOL_HD void backward_row(const backward_args& a, std::size_t i) {
  const query_row<D> r(a, i);
  row_sums<D> st;
  accumulate_row<D, kDv1>(a, i, r.q, r.dout, r.dout0, 0, a.m, global_key_source{a}, st);
  finish_row<D>(a, i, st);
}

/// The key phase's sums of one key and value window over the queries seen so far.
template <int D, int kW>
struct key_sums {
  float dk[D], dv[kW];
  ATTNPOOL_HD key_sums() {
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) dk[e] = 0.0f;
    ATTNPOOL_UNROLL
    for (int e = 0; e < kW; ++e) dv[e] = 0.0f;
  }
  /// Adds the sums of a disjoint set of queries (another query split), in the caller's order.
  ATTNPOOL_HD void merge(const key_sums& o) {
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) dk[e] += o.dk[e];
    ATTNPOOL_UNROLL
    for (int e = 0; e < kW; ++e) dv[e] += o.dv[e];
  }
};

/// Queries, dout, lse2 and D_i in global memory.
struct global_query_source {
  const backward_args& a;
  template <int D>
  ATTNPOOL_HD void query(std::size_t i, float (&qi)[D]) const {
    backward_detail::load_row<D>(a.q + i * a.ldq, a.d, qi);
  }
  ATTNPOOL_HD float lse2(std::size_t i) const { return backward_detail::ldg(a.lse2 + i); }
  ATTNPOOL_HD float dsum(std::size_t i) const { return backward_detail::ldg(a.dsum + i); }
  ATTNPOOL_HD float dout0(std::size_t i) const { return backward_detail::ldg(a.dout + i * a.lddo); }
};

/// A tile of queries [i0, i0 + len) staged by load_query_tile: D coordinates, lse2, D_i and
/// dout_i[0] per query (dout's other columns are read from global memory).
template <int D>
struct tile_query_source {
  const float* q;  // len x D
  const float* l2;
  const float* ds;
  const float* d0;
  std::size_t i0;
  ATTNPOOL_HD void query(std::size_t i, float (&qi)[D]) const {
    const float* row = q + (i - i0) * D;
    ATTNPOOL_UNROLL
    for (int c = 0; c < D; ++c) qi[c] = row[c];
  }
  ATTNPOOL_HD float lse2(std::size_t i) const { return l2[i - i0]; }
  ATTNPOOL_HD float dsum(std::size_t i) const { return ds[i - i0]; }
  ATTNPOOL_HD float dout0(std::size_t i) const { return d0[i - i0]; }
};

/// Thread t of nt stages queries [i0, i0 + len): q (len x D, zero-padded), lse2, D_i and
/// dout_i[0] (rows past n: zeros, never read as live).
template <int D>
ATTNPOOL_HD void load_query_tile(const backward_args& a, std::size_t i0, int len, float* q,
                                 float* l2, float* ds, float* d0, int t, int nt) {
  using backward_detail::ldg;
  for (int e = t; e < len * D; e += nt) {
    const std::size_t i = i0 + static_cast<std::size_t>(e / D);
    const int c = e % D;
    q[e] = i < a.n && c < a.d ? ldg(a.q + i * a.ldq + c) : 0.0f;
  }
  for (int r = t; r < len; r += nt) {
    const std::size_t i = i0 + static_cast<std::size_t>(r);
    const bool in = i < a.n;
    l2[r] = in ? ldg(a.lse2 + i) : 0.0f;
    ds[r] = in ? ldg(a.dsum + i) : 0.0f;
    d0[r] = in ? ldg(a.dout + i * a.lddo) : 0.0f;
  }
}

/// Queries the key phase takes at a time, unchecked where the mask leaves the block whole.
inline constexpr std::size_t kQueryBlock = 8;

/// Key phase, queries [i_begin, i_end) against key j and value columns [col0, col0 + cols)
/// (cols <= kW), added to st in query order, from `queries` (global or a tile holding them).
template <int D, bool kDv1, int kW, class Queries>
ATTNPOOL_HD void accumulate_key(const backward_args& a, std::size_t j, const float (&kj)[D],
                                const float* vj, float v0, int col0, int cols, std::size_t i_begin,
                                std::size_t i_end, const Queries& queries, key_sums<D, kW>& st) {
  using namespace backward_detail;
  const detail::gaussian_log2_score score{a.score_constant};
  const std::size_t end = i_end < a.n ? i_end : a.n;
  // Query i's terms, in query order; every query in a block of kQueryBlock that the mask leaves
  // whole (no mask, or leave_one_out's skipped query j outside it) takes them unchecked.
  const auto add = [&](std::size_t i) {
    float qi[D];
    queries.query(i, qi);
    const float* dout_i = a.dout + i * a.lddo;
    const float r2 = detail::squared_distance<D>(qi, kj);
    const float p = detail::fast_exp2(sub_rn(score(r2), queries.lse2(i)));
    // v0 * dout_i[0] is the product dot_dout_v forms for dv == 1.
    const float dp = kDv1 ? v0 * queries.dout0(i) : dot_row(dout_i, vj, a.dv);
    const float ds = p * (dp - queries.dsum(i));
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) st.dk[e] = fma_hd(ds, qi[e] - kj[e], st.dk[e]);
    if constexpr (kDv1) {
      st.dv[0] = fma_hd(p, queries.dout0(i), st.dv[0]);
    } else {
      ATTNPOOL_UNROLL
      for (int e = 0; e < kW; ++e)
        if (e < cols) st.dv[e] = fma_hd(p, ldg(dout_i + col0 + e), st.dv[e]);
    }
  };
  constexpr std::size_t kB = kQueryBlock;
  const bool unmasked = a.mask.kind == attnpool::mask::none;
  const bool loo = a.mask.kind == attnpool::mask::leave_one_out;
  std::size_t i = i_begin;
  for (; i + kB <= end; i += kB) {
    if (unmasked || (loo && j - i >= kB)) {  // j - i wraps for j < i: outside the block too
      ATTNPOOL_UNROLL
      for (std::size_t t = 0; t < kB; ++t) add(i + t);
    } else {
      for (std::size_t t = 0; t < kB; ++t)
        if (a.mask.sees(i + t, j)) add(i + t);  // the queries that see key j
    }
  }
  for (; i < end; ++i)
    if (a.mask.sees(i, j)) add(i);
}

/// Key phase, the end of key j: dk row j (when a.dk and write_dk) and the window's dv columns.
template <int D, int kW>
ATTNPOOL_HD void finish_key(const backward_args& a, std::size_t j, int col0, int cols,
                            bool write_dk, const key_sums<D, kW>& st) {
  if (a.dk != nullptr && write_dk) {
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e)
      if (e < a.d)
        a.dk[j * a.lddk + e] = static_cast<float>(a.inv_h2 * static_cast<double>(st.dk[e]));
  }
  if (a.dvv != nullptr) {
    ATTNPOOL_UNROLL
    for (int e = 0; e < kW; ++e)
      if (e < cols) a.dvv[j * a.lddv + col0 + e] = st.dv[e];
  }
}

/// Floats of one key's partial sums between the tiled keys kernel and its merge: dk (D, from
/// value window 0) and every value column (each window its own).
template <int D>
constexpr std::size_t key_partial_floats(int dv) {
  return static_cast<std::size_t>(D) + static_cast<std::size_t>(dv);
}

/// Stores a window's key sums into key j's partial slot `dst` (dk only from window 0).
template <int D, int kW>
ATTNPOOL_HD void store_key_sums(float* dst, int col0, int cols, bool write_dk,
                                const key_sums<D, kW>& st) {
  if (write_dk) {
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) dst[e] = st.dk[e];
  }
  ATTNPOOL_UNROLL
  for (int e = 0; e < kW; ++e)
    if (e < cols) dst[D + col0 + e] = st.dv[e];
}

/// Key j's partial sums of ranges 0, 1, ..., splits - 1 (range s at partials + (s m + j) *
/// key_partial_floats) added in that order (key_sums::merge's order), then written as
/// finish_key writes them, every value column at once.
template <int D>
ATTNPOOL_HD void finish_key_splits(const backward_args& a, std::size_t j, std::size_t splits,
                                   const float* partials) {
  const std::size_t kP = key_partial_floats<D>(a.dv);
  if (a.dk != nullptr) {
    for (int e = 0; e < a.d; ++e) {
      float acc = partials[j * kP + e];
      for (std::size_t s = 1; s < splits; ++s) acc += partials[(s * a.m + j) * kP + e];
      a.dk[j * a.lddk + e] = static_cast<float>(a.inv_h2 * static_cast<double>(acc));
    }
  }
  if (a.dvv != nullptr) {
    for (int c = 0; c < a.dv; ++c) {
      float acc = partials[j * kP + D + c];
      for (std::size_t s = 1; s < splits; ++s) acc += partials[(s * a.m + j) * kP + D + c];
      a.dvv[j * a.lddv + c] = acc;
    }
  }
}

/// Key phase for key j and value columns [col0, col0 + cols) (cols <= kW) over all queries, in
/// one thread: writes dv for those columns when a.dvv, and dk row j when a.dk and write_dk.
/// Needs a.lse2 and a.dsum of every row.
template <int D, bool kDv1, int kW>
ATTNPOOL_HD void backward_key(const backward_args& a, std::size_t j, int col0, int cols,
                              bool write_dk) {
  float kj[D];
  backward_detail::load_row<D>(a.k + j * a.ldk, a.d, kj);
  const float* vj = a.v + j * a.ldv;
  key_sums<D, kW> st;
  accumulate_key<D, kDv1, kW>(a, j, kj, vj, backward_detail::ldg(vj), col0, cols, 0, a.n,
                              global_query_source{a}, st);
  finish_key<D, kW>(a, j, col0, cols, write_dk, st);
}

}  // namespace attnpool::kernels
