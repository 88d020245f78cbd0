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

/// Row phase for query row i (see the file comment): writes a.lse2[i], a.dsum[i], and when
/// asked dq row i and a.dh_rows[i]. Every row sees at least one key (validated on the host).
template <int D, bool kDv1>
ATTNPOOL_HD void backward_row(const backward_args& a, std::size_t i) {
  using namespace backward_detail;
  constexpr int kC = backward_traits<D>::kChunk;
  float qi[D];
  load_row<D>(a.q + i * a.ldq, a.d, qi);
  const float* dout_i = a.dout + i * a.lddo;
  const float dout0 = ldg(dout_i);
  const detail::gaussian_log2_score score{a.score_constant};
  const detail::key_range vis = a.mask.row(i, a.m);  // every row sees >= 1 key

  detail::online_softmax softmax;  // the running maximum and z
  float c = 0.0f, rr = 0.0f, qr = 0.0f;
  float b[D], g[D];
  ATTNPOOL_UNROLL
  for (int e = 0; e < D; ++e) b[e] = g[e] = 0.0f;

  for (std::size_t j0 = 0; j0 < vis.limit; j0 += kC) {
    float s[kC], dp[kC];
    // Pass 1 over the chunk: scores (masked and past-the-end keys -inf) and dp.
    ATTNPOOL_UNROLL
    for (int t = 0; t < kC; ++t) {
      const std::size_t j = j0 + static_cast<std::size_t>(t);
      const bool live = vis.sees(j);
      const std::size_t jj = live ? j : 0;  // dead keys read row 0 (m >= 1) and are dropped
      float kj[D];
      load_row<D>(a.k + jj * a.ldk, a.d, kj);
      const float* vj = a.v + jj * a.ldv;
      s[t] = live ? score(detail::squared_distance<D>(qi, kj)) : -INFINITY;
      dp[t] = dot_dout_v<kDv1>(dout_i, vj, dout0, vj, a.dv);
    }
    float cmax = s[0];
    ATTNPOOL_UNROLL
    for (int t = 1; t < kC; ++t) cmax = max_hd(cmax, s[t]);
    if (cmax == -INFINITY) continue;  // every key of the chunk masked: nothing to add
    // Raise the running maximum first (one merge, two exp2 per chunk), so that the chunk's
    // weights are taken relative to it directly: one exp2 per pair.
    const detail::rescale r = softmax.merge(detail::online_softmax{cmax, 0.0f});
    c *= r.self;
    rr *= r.self;
    qr *= r.self;
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) {
      b[e] *= r.self;
      g[e] *= r.self;
    }
    // Pass 2: the weights and the sums; the key rows are read again (L1 hits on the GPU) and
    // give bitwise the same distances.
    ATTNPOOL_UNROLL
    for (int t = 0; t < kC; ++t) {
      const std::size_t j = j0 + static_cast<std::size_t>(t);
      const bool live = vis.sees(j);
      const std::size_t jj = live ? j : 0;
      float kj[D];
      load_row<D>(a.k + jj * a.ldk, a.d, kj);
      const float r2 = detail::squared_distance<D>(qi, kj);
      const float w = live ? detail::fast_exp2(sub_rn(s[t], softmax.max)) : 0.0f;
      const float wd = w * dp[t];
      softmax.sum += w;  // the state's invariant: sum of 2^(s - max) over the keys seen
      c += wd;
      rr = fma_hd(w, r2, rr);
      qr = fma_hd(wd, r2, qr);
      ATTNPOOL_UNROLL
      for (int e = 0; e < D; ++e) {
        const float diff = qi[e] - kj[e];
        b[e] = fma_hd(w, diff, b[e]);
        g[e] = fma_hd(wd, diff, g[e]);
      }
    }
  }
  // z >= 1 (the maximum's own weight is 2^0) and finite.
  const double z = static_cast<double>(softmax.sum);
  const float dsum = static_cast<float>(static_cast<double>(c) / z);
  a.lse2[i] = softmax.max + log2_accurate(softmax.sum);
  a.dsum[i] = dsum;
  if (a.dq != nullptr) {
    const double f = -a.inv_h2 / z;
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e)  // constant indices after unrolling keep b, g in registers
      if (e < a.d)
        a.dq[i * a.lddq + e] =
            static_cast<float>(f * (static_cast<double>(g[e]) -
                                    static_cast<double>(dsum) * static_cast<double>(b[e])));
  }
  if (a.dh_rows != nullptr) {
    a.dh_rows[i] = static_cast<float>(
        (static_cast<double>(qr) - static_cast<double>(dsum) * static_cast<double>(rr)) / z);
  }
}

/// Key phase for key j and value columns [col0, col0 + cols) (cols <= kW): writes dv for those
/// columns when a.dvv, and dk row j when a.dk and write_dk. Needs a.lse2 and a.dsum of every row.
template <int D, bool kDv1, int kW>
ATTNPOOL_HD void backward_key(const backward_args& a, std::size_t j, int col0, int cols,
                              bool write_dk) {
  using namespace backward_detail;
  float kj[D];
  load_row<D>(a.k + j * a.ldk, a.d, kj);
  const float* vj = a.v + j * a.ldv;
  const float v0 = ldg(vj);
  const detail::gaussian_log2_score score{a.score_constant};

  float dk[D], dvw[kW];
  ATTNPOOL_UNROLL
  for (int e = 0; e < D; ++e) dk[e] = 0.0f;
  ATTNPOOL_UNROLL
  for (int e = 0; e < kW; ++e) dvw[e] = 0.0f;
  for (std::size_t i = 0; i < a.n; ++i) {
    if (!a.mask.sees(i, j)) continue;  // the queries that see key j
    float qi[D];
    load_row<D>(a.q + i * a.ldq, a.d, qi);
    const float* dout_i = a.dout + i * a.lddo;
    const float r2 = detail::squared_distance<D>(qi, kj);
    const float p = detail::fast_exp2(sub_rn(score(r2), ldg(a.lse2 + i)));
    const float dp = dot_dout_v<kDv1>(dout_i, vj, v0, dout_i, a.dv);
    const float ds = p * (dp - ldg(a.dsum + i));
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e) dk[e] = fma_hd(ds, qi[e] - kj[e], dk[e]);
    ATTNPOOL_UNROLL
    for (int e = 0; e < kW; ++e)
      if (e < cols) dvw[e] = fma_hd(p, ldg(dout_i + col0 + e), dvw[e]);
  }
  if (a.dk != nullptr && write_dk) {
    ATTNPOOL_UNROLL
    for (int e = 0; e < D; ++e)
      if (e < a.d) a.dk[j * a.lddk + e] = static_cast<float>(a.inv_h2 * static_cast<double>(dk[e]));
  }
  if (a.dvv != nullptr) {
    ATTNPOOL_UNROLL
    for (int e = 0; e < kW; ++e)
      if (e < cols) a.dvv[j * a.lddv + col0 + e] = dvw[e];
  }
}

}  // namespace attnpool::kernels
