// The fused backward pass of attention pooling on the GPU, FlashAttention style: the
// n x m matrix is never stored. Host-includable (no device code): src/cuda/backward.cpp plans
// and launches through this header; kernels/backward/kernel.cuh holds the device side and
// kernels/backward/rows.cu / backward_keys.cu instantiate it; the per-thread work is
// kernels/backward/thread_ops.hpp, host-testable.
//
// With P the weights (Gaussian, log2 scores s2_ij = score_constant * ||q_i - k_j||^2, masked keys
// -inf), dp_ij = dout_i . v_j, D_i = dout_i . out_i = sum_j P_ij dp_ij, dS_ij = P_ij (dp_ij - D_i):
//   1. rows (one thread per query row): ONE streaming pass over the row's visible keys with
//      the shared online softmax, keeping the max-rescaled sums that give, at the end,
//      lse2_i = max + log2(sum) (log2 units, as the online_softmax state gives it),
//      D_i = sum_j P_ij dp_ij (no dv-wide accumulator, no forward output needed),
//      dq_i = -1/h^2 sum_j dS_ij (q_i - k_j) and the row's share of dh,
//      sum_j dS_ij ||q_i - k_j||^2 (kernels/backward/thread_ops.hpp says how).
//   2. keys (one thread per key, grid.y = value windows): P_ij = 2^(s2_ij - lse2_i)
//      recomputed with the same score functor; dk_j = 1/h^2 sum_i dS_ij (q_i - k_j) and
//      dv_j = sum_i P_ij dout_i.
//   3. dh: one block sums the per-row shares in double, in a fixed order, times 1/h^3.
// Every output element is one thread's sum in a fixed order: no atomics, bitwise repeatable.
#pragma once

#include <attnpool/detail/dims.hpp>
#include <attnpool/detail/mask.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

#include "kernels/common/params.hpp"

#include <cstddef>
#include <type_traits>

namespace attnpool::kernels {

/// Everything the backward kernels read and write (device pointers, leading dimensions in
/// elements). Gradient pointers may be null: that gradient is not written.
struct backward_args : problem_args {
  const float* dout = nullptr;  ///< n x dv, row stride lddo
  std::size_t lddo = 0;
  float score_constant = 0.0f;  ///< gaussian_log2_score's constant, -log2(e) / (2 h^2)
  double inv_h2 = 0.0;          ///< 1 / h^2 (the gradients' scale, applied once per element)

  detail::mask_rule mask;  ///< which keys each query sees; valid_lens in device memory

  float* lse2 = nullptr;     ///< n: written by the rows phase, read by the keys phase
  float* dsum = nullptr;     ///< n: D_i, written by the rows phase
  float* dh_rows = nullptr;  ///< n: per-row share of dh (rows), or null

  float* dq = nullptr;   ///< n x d, row stride lddq, or null
  float* dk = nullptr;   ///< m x d, row stride lddk, or null
  float* dvv = nullptr;  ///< m x dv, row stride lddv, or null
  std::size_t lddq = 0, lddk = 0, lddv = 0;
};

/// Tile constants of the backward kernels for compiled query dimension D (a run-time d <= D is
/// zero-padded, which leaves every distance and difference exactly unchanged). One row (rows
/// phase) or one key (keys phase) per thread, its own row and gradient accumulators in
/// registers, the other side read through L1.
///
/// Tuning: chosen on paper, not varied; bench_cuda_learn on an NVIDIA H100 80GB HBM3
/// (2026-11-26; the rationale and register counts are in bench/runs/2026-11-26-h100.md).
template <int D>
struct backward_traits {
  static_assert(D == 1 || D == 2 || D == 4 || D == 8 || D == 16 || D == 32 || D == 64,
                "backward_traits: D must be one of the compiled query dimensions");
  /// Four warps, as the forward; H100, n = m = 2^16, d = dv = 1: 24.3 ms (14.5x the forward).
  static constexpr int kThreads = 128;
  /// Keys per online-softmax merge (rows phase); 8 for D >= 16 (D = 16: 247 registers at 16).
  static constexpr int kChunk = D <= 8 ? 16 : 8;
  /// Value columns one key thread accumulates (dv > 1); wider dv runs ceil(dv / 8) windows.
  static constexpr int kValueWindow = 8;
  static_assert(kThreads % 32 == 0, "whole warps only");
  // Row phase: kChunk scores and dp values plus q_i, b and g (3 D) live per thread. D = 64
  // reaches 224 of the 255 registers, so nvcc may spill there (correct, slower).
  static_assert(kChunk * 2 + 3 * D <= 255, "live registers per thread stay under the cap");
};

/// The compiled query dimensions: {1, 2, 4, 8, 16, 32, 64}, the set of the fused value windows.
using backward_d_buckets = detail::pow2_dims_to_64;

/// The compiled query dimension serving a run-time d in [1, kMaxGpuBackwardDims]: the smallest of
/// {1, 2, 4, 8, 16, 32, 64} that is >= d.
constexpr int backward_d_bucket(std::size_t d) {
  return backward_d_buckets::bucket(d);
}

/// The value-column window of the key phase: 1 for dv == 1, else kValueWindow columns.
template <int D, bool kDv1>
inline constexpr int backward_value_window = kDv1 ? 1 : backward_traits<D>::kValueWindow;

/// The run-time -> compile-time switch of the backward pass: calls f(D, kDv1) as
/// std::integral_constant values, D = backward_d_bucket(d), kDv1 = (dv == 1).
template <class F>
void dispatch_backward(std::size_t d, int dv, F&& f) {
  auto with_dv = [&](auto dc) {
    if (dv == 1) {
      f(dc, std::true_type{});
    } else {
      f(dc, std::false_type{});
    }
  };
  backward_d_buckets::dispatch(d, with_dv);
}

/// Phase 1: lse2 and dsum (always), dq (when a.dq) and dh_rows (when a.dh_rows). Throws
/// cuda_error on a launch failure.
void launch_backward_rows(const backward_args& a, stream_t stream);
/// Phase 2: dk (when a.dk) and dv (when a.dvv); needs phase 1's lse2 and dsum.
void launch_backward_keys(const backward_args& a, stream_t stream);
/// Phase 3: *dh = scale * sum_i dh_rows[i], summed in double in a fixed order (one block).
void launch_backward_dh(const float* dh_rows, std::size_t n, double scale, double* dh,
                        stream_t stream);

}  // namespace attnpool::kernels
