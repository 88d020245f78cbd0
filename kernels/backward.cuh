// Device side of the fused backward pass (see kernels/backward.hpp for the phases and the
// maths). Included only by kernels/backward_rows.cu and kernels/backward_keys.cu.
//
// Every pair's log2 score is recomputed in each phase by the same code, score(squared_distance
// <D>(q_i, k_j)) with the shared Gaussian functor, so that the phases see bitwise the same
// scores, and the log-sum-exp is subtracted with __fsub_rn: a contracted FMA
// (neg_scale * r2 - lse2) would not match the lse2 that phase 1 computed from rounded scores,
// which matters for scores of -1e13 (far keys at small h).
#pragma once

#include <attnpool/detail/online_softmax.hpp>

#include "backward.hpp"
#include "cuda/cuda_check.hpp"

#include <cuda_runtime.h>

#include <cstddef>
#include <type_traits>

namespace attnpool::kernels {

/// Which keys query row i sees: [0, limit) except `skip` (mask::none: every key).
struct row_visibility {
  std::size_t limit;
  std::size_t skip;
};

__device__ inline row_visibility visibility_of_row(const backward_args& a, std::size_t i) {
  row_visibility r{a.m, ~std::size_t{0}};
  if (a.mask == attnpool::mask::valid_length) r.limit = a.valid_lens[i];  // in [1, m]
  if (a.mask == attnpool::mask::leave_one_out) r.skip = i;
  return r;
}

/// The first d coordinates of a row, zero-padded to D (padding leaves distances unchanged).
template <int D>
__device__ inline void load_row(const float* src, int d, float (&x)[D]) {
#pragma unroll
  for (int c = 0; c < D; ++c) x[c] = c < d ? __ldg(src + c) : 0.0f;
}

/// dp = dout_i . v_j, summed in column order (the same order in every phase).
__device__ inline float dot_row(const float* a, const float* b, int cols) {
  float acc = 0.0f;
  for (int c = 0; c < cols; ++c) acc = fmaf(__ldg(a + c), __ldg(b + c), acc);
  return acc;
}

/// Phase 1, one thread per query row: the online softmax over the row's visible keys with the
/// scalar dp_ij as the value; writes lse2_i and D_i = sum_j P_ij dp_ij (= dout_i . out_i).
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_stats_kernel(const backward_args a) {
  using traits = backward_traits<D>;
  constexpr int kC = traits::kChunk;
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * traits::kThreads + threadIdx.x;
  if (i >= a.n) return;  // no block-wide barrier in this kernel
  float qi[D];
  load_row<D>(a.q + i * a.ldq, a.d, qi);
  const float* dout_i = a.dout + i * a.lddo;
  const float dout0 = __ldg(dout_i);
  const detail::gaussian_log2_score score{a.neg_scale};
  const row_visibility vis = visibility_of_row(a, i);

  detail::online_softmax softmax;
  float acc = 0.0f;
  for (std::size_t j0 = 0; j0 < vis.limit; j0 += kC) {
    float s[kC], dp[kC];
#pragma unroll
    for (int t = 0; t < kC; ++t) {
      const std::size_t j = j0 + static_cast<std::size_t>(t);
      const bool live = j < vis.limit && j != vis.skip;
      const std::size_t jj = live ? j : 0;  // dead keys read row 0 (m >= 1) and are dropped
      float kj[D];
      load_row<D>(a.k + jj * a.ldk, a.d, kj);
      const float* vj = a.v + jj * a.ldv;
      s[t] = live ? score(detail::squared_distance<D>(qi, kj)) : -INFINITY;
      if constexpr (kDv1) {
        dp[t] = dout0 * __ldg(vj);
      } else {
        dp[t] = dot_row(dout_i, vj, a.dv);
      }
    }
    float cmax = s[0];
#pragma unroll
    for (int t = 1; t < kC; ++t) cmax = fmaxf(cmax, s[t]);
    if (cmax == -INFINITY) continue;  // every key of the chunk masked: nothing to merge
    float csum = 0.0f, cacc = 0.0f;
#pragma unroll
    for (int t = 0; t < kC; ++t) {
      const float w = detail::fast_exp2(__fsub_rn(s[t], cmax));  // masked: 2^-inf = 0
      csum += w;
      cacc = fmaf(w, dp[t], cacc);
    }
    const detail::rescale r = softmax.merge(detail::online_softmax{cmax, csum});
    acc = fmaf(acc, r.self, r.other * cacc);
  }
  // Every row sees at least one key (validated), so sum >= 1 and both are finite.
  a.lse2[i] = softmax.max + log2f(softmax.sum);
  a.dsum[i] = acc / softmax.sum;
}

/// Phase 2, one thread per query row: dq_i and the row's share of dh.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_rows_kernel(const backward_args a) {
  using traits = backward_traits<D>;
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * traits::kThreads + threadIdx.x;
  if (i >= a.n) return;
  float qi[D];
  load_row<D>(a.q + i * a.ldq, a.d, qi);
  const float* dout_i = a.dout + i * a.lddo;
  const float dout0 = __ldg(dout_i);
  const float lse2 = a.lse2[i], dsum = a.dsum[i];
  const detail::gaussian_log2_score score{a.neg_scale};
  const row_visibility vis = visibility_of_row(a, i);

  float dq[D];
#pragma unroll
  for (int c = 0; c < D; ++c) dq[c] = 0.0f;
  float dh = 0.0f;
  constexpr int kUnroll = D <= 8 ? 4 : 1;  // a few keys in flight where registers allow
#pragma unroll kUnroll
  for (std::size_t j = 0; j < vis.limit; ++j) {
    if (j == vis.skip) continue;
    float kj[D];
    load_row<D>(a.k + j * a.ldk, a.d, kj);
    const float* vj = a.v + j * a.ldv;
    const float r2 = detail::squared_distance<D>(qi, kj);
    const float p = detail::fast_exp2(__fsub_rn(score(r2), lse2));
    float dp;
    if constexpr (kDv1) {
      dp = dout0 * __ldg(vj);
    } else {
      dp = dot_row(dout_i, vj, a.dv);
    }
    const float ds = p * (dp - dsum);
    dh = fmaf(ds, r2, dh);
#pragma unroll
    for (int c = 0; c < D; ++c) dq[c] = fmaf(ds, qi[c] - kj[c], dq[c]);
  }
  if (a.dq != nullptr) {
#pragma unroll
    for (int c = 0; c < D; ++c)  // constant indices keep dq in registers
      if (c < a.d) a.dq[i * a.lddq + c] = static_cast<float>(-a.inv_h2 * static_cast<double>(dq[c]));
  }
  if (a.dh_rows != nullptr) a.dh_rows[i] = dh;
}

/// Phase 3, one thread per key (grid.y: windows of kValueWindow value columns): dk_j, dv_j.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_keys_kernel(const backward_args a) {
  using traits = backward_traits<D>;
  constexpr int kW = kDv1 ? 1 : traits::kValueWindow;
  const std::size_t j = static_cast<std::size_t>(blockIdx.x) * traits::kThreads + threadIdx.x;
  if (j >= a.m) return;
  const int col0 = static_cast<int>(blockIdx.y) * kW;
  const int cols = min(kW, a.dv - col0);
  float kj[D];
  load_row<D>(a.k + j * a.ldk, a.d, kj);
  const float* vj = a.v + j * a.ldv;
  const float v0 = __ldg(vj);
  const detail::gaussian_log2_score score{a.neg_scale};
  // Which queries see key j: leave_one_out skips query j; valid_length those with len <= j.
  const std::size_t skip = a.mask == attnpool::mask::leave_one_out ? j : ~std::size_t{0};
  const bool by_length = a.mask == attnpool::mask::valid_length;

  float dk[D], dvw[kW];
#pragma unroll
  for (int c = 0; c < D; ++c) dk[c] = 0.0f;
#pragma unroll
  for (int c = 0; c < kW; ++c) dvw[c] = 0.0f;
  constexpr int kUnroll = D <= 8 ? 2 : 1;
#pragma unroll kUnroll
  for (std::size_t i = 0; i < a.n; ++i) {
    if (i == skip || (by_length && j >= a.valid_lens[i])) continue;
    float qi[D];
    load_row<D>(a.q + i * a.ldq, a.d, qi);
    const float* dout_i = a.dout + i * a.lddo;
    const float r2 = detail::squared_distance<D>(qi, kj);
    const float p = detail::fast_exp2(__fsub_rn(score(r2), __ldg(a.lse2 + i)));
    float dp;
    if constexpr (kDv1) {
      dp = __ldg(dout_i) * v0;
    } else {
      dp = dot_row(dout_i, vj, a.dv);
    }
    const float ds = p * (dp - __ldg(a.dsum + i));
#pragma unroll
    for (int c = 0; c < D; ++c) dk[c] = fmaf(ds, qi[c] - kj[c], dk[c]);
#pragma unroll
    for (int c = 0; c < kW; ++c)
      if (c < cols) dvw[c] = fmaf(p, __ldg(dout_i + col0 + c), dvw[c]);
  }
  if (a.dk != nullptr && blockIdx.y == 0) {
#pragma unroll
    for (int c = 0; c < D; ++c)  // constant indices keep dk in registers
      if (c < a.d) a.dk[j * a.lddk + c] = static_cast<float>(a.inv_h2 * static_cast<double>(dk[c]));
  }
  if (a.dvv != nullptr) {
#pragma unroll
    for (int c = 0; c < kW; ++c)
      if (c < cols) a.dvv[j * a.lddv + col0 + c] = dvw[c];
  }
}

/// The run-time -> compile-time switch of the backward kernels: calls f(D, kDv1) as
/// std::integral_constant values, D = backward_d_bucket(d), kDv1 = (dv == 1).
template <class F>
void dispatch_backward(std::size_t d, int dv, F&& f) {
  const bool dv1 = dv == 1;
  auto with_dv = [&](auto dc) {
    if (dv1) {
      f(dc, std::true_type{});
    } else {
      f(dc, std::false_type{});
    }
  };
  switch (backward_d_bucket(d)) {
    case 1: return with_dv(std::integral_constant<int, 1>{});
    case 2: return with_dv(std::integral_constant<int, 2>{});
    case 4: return with_dv(std::integral_constant<int, 4>{});
    case 8: return with_dv(std::integral_constant<int, 8>{});
    case 16: return with_dv(std::integral_constant<int, 16>{});
    case 32: return with_dv(std::integral_constant<int, 32>{});
    default: return with_dv(std::integral_constant<int, 64>{});
  }
}

/// Blocks of kThreads rows (or keys) covering `rows`; the host side checked the grid limit.
template <int D>
unsigned backward_blocks(std::size_t rows) {
  constexpr std::size_t t = backward_traits<D>::kThreads;
  return static_cast<unsigned>((rows + t - 1) / t);
}

}  // namespace attnpool::kernels
