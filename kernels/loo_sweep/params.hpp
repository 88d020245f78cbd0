// The leave-one-out bandwidth sweep on the GPU: the kernel family behind
// loo_cv_error and select_bandwidth on backend::cuda_fused. Host-includable (no device code):
// src/cuda/bandwidth.cpp plans and launches through this header; kernels/loo_sweep/sweep.cu
// holds the device side.
//
// Layers (CUB style):
//   loo_cv_error / select_bandwidth   public calls, validation       (src/api/bandwidth.cpp)
//   detail::cuda_loo_cv                uploads x, y once; batches     (src/cuda/bandwidth.cpp)
//   launch_loo_sweep / launch_loo_reduce  picks D, DVC and the grid   (here,
//   kernels/loo_sweep/sweep.cu) loo_sweep_kernel<D, DVC>           thin __global__ entry
//   (kernels/loo_sweep/sweep.cu) loo_sweep_agent<D, DVC>            walks the key tiles of a block
//   (kernels/loo_sweep/sweep.cu) loo_reduce_kernel                  per bandwidth, sums the rows in
//   a fixed order
//
// What one thread does: it owns training row i and a group of kGroup bandwidths (grid.y walks
// the groups). The block streams every key j through shared memory once; the thread computes
// ||x_i - x_j||^2 once per pair and feeds it to each bandwidth's softmax sums and value
// accumulators, with key i skipped (the leave-one-out mask). It then writes, per bandwidth, the
// row's squared error sum_c (y_ic - yhat_ic)^2, and loo_reduce_kernel adds the rows.
#pragma once

#include <attnpool/detail/dims.hpp>
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/types.hpp>

#include "kernels/common/params.hpp"

#include <cstddef>
#include <limits>
#include <type_traits>

namespace attnpool::kernels {

/// Everything one sweep launch reads: the training set is the queries, the keys and the values
/// at once (q = k = x, v = y, n = m), each query row i seeing every key but i (the leave-one-out
/// mask); on top, per bandwidth, the score constant and the row errors it writes. Plain data,
/// passed by value as the kernel parameter.
struct loo_sweep_args : problem_args {
  /// nb floats in device memory: -log2(e) / (2 h_b^2) per bandwidth, rounded once from double
  /// (detail::gaussian_log2_scale, the constant of the shared gaussian_log2_score functor).
  const float* score_constants = nullptr;
  int nb = 0;
  /// nb x n doubles: row_error[b * n + i] = sum_c (y_ic - yhat_ic(h_b))^2.
  double* row_error = nullptr;
};

/// The sweep of training inputs x (n x d) and targets y (n x dv), device memory, over nb
/// bandwidths' score constants, writing nb x n row errors.
inline loo_sweep_args loo_sweep_args_of(const_view x, const_view y, const float* score_constants,
                                        int nb, double* row_error) {
  loo_sweep_args a;
  static_cast<problem_args&>(a) = problem_args_of(x, x, y);
  a.score_constants = score_constants;
  a.nb = nb;
  a.row_error = row_error;
  return a;
}

/// Tile constants of loo_sweep_kernel<D, DVC>. D is the input dimension the kernel is compiled
/// for (a run-time d <= D is zero-padded to D, which leaves every distance exactly unchanged);
/// D == 0 is the generic path for d > 8, which reads both rows from global memory (the key row
/// is the same address for every thread of the block: a broadcast served by L1) instead of
/// registers and shared memory. DVC is the value-column window held in registers; wider dv runs
/// ceil(dv / DVC) windows one after the other inside the thread, so that each row's error sum
/// stays in one thread (no atomics, fixed order).
///
/// Tuning: chosen on paper from the H100's per-SM budget (the sweep is MUFU-bound: one ex2 per
/// pair and bandwidth), not varied; bench_cuda_cv on an NVIDIA H100 80GB HBM3 (2026-11-26; the
/// rationale is in bench/runs/2026-11-26-h100.md).
template <int D, int DVC>
struct loo_sweep_traits {
  static_assert(D == 0 || D == 1 || D == 2 || D == 4 || D == 8,
                "loo_sweep_traits: D must be one of the compiled input dimensions (0 = generic)");
  static_assert(DVC == 1 || DVC == 4, "loo_sweep_traits: DVC must be 1 or 4");

  static constexpr bool kGeneric = D == 0;
  /// One row per thread, four warps; H100, n = 1e5, 64 bandwidths: 201 ms, 76 % of exp2 bound.
  static constexpr int kThreads = 128;
  /// Bandwidths per thread, sharing every distance 8 ways (3.19e12 pair-bandwidths/s, H100).
  static constexpr int kGroup = 8;
  /// Distances in registers per rescale and per fold of the partial sums (not varied).
  static constexpr int kChunk = 16;
  /// Keys staged per tile, one per thread; amortises the two barriers per tile (not varied).
  static constexpr int kTileKeys = kThreads;

  static constexpr int kKeyFloats = kGeneric ? 0 : kTileKeys * D;
  static constexpr int kValueFloats = kTileKeys * DVC;
  static constexpr std::size_t kSmemBytes = sizeof(float) * (kKeyFloats + kValueFloats);

  static_assert(kThreads % 32 == 0, "whole warps only");
  static_assert(kTileKeys == kThreads, "the staging loop loads exactly one key per thread");
  static_assert(kTileKeys % kChunk == 0,
                "a chunk never straddles a tile, so chunk reads stay inside the shared arrays");
  static_assert(kChunk <= 32, "a chunk's validity mask is one 32-bit word");
  static_assert(kSmemBytes <= 48 * 1024, "static shared memory is limited to 48 KiB per block");
  // Live registers: the chunk's distances, the query row, per bandwidth the constant, the sum,
  // DVC accumulators and a double error (2 registers), plus one chunk's partial sums.
  static_assert(kChunk + D + kGroup * (1 + 1 + DVC + 2) + (1 + DVC) <= 160,
                "live registers per thread must leave room under the 255-register cap");
};

/// Bandwidths per thread of every instantiation (loo_sweep_traits<*, *>::kGroup).
inline constexpr int kLooGroup = loo_sweep_traits<1, 1>::kGroup;

/// One training row's leave-one-out sums for a group of G bandwidths and a window of DVC value
/// columns: what one thread of loo_sweep_kernel holds in registers, written once for the device
/// and the host (tests/cuda/test_cuda_bandwidth.cpp drives it on the CPU without a GPU).
///
/// Every Gaussian score of the row is -c_b r_j (c_b = -neg_c[b] > 0, r_j the squared
/// distance), so the row's largest score is its nearest key's for EVERY bandwidth. The state
/// therefore keeps one running minimum distance (shared by the group) instead of one running
/// maximum score per bandwidth, and weighs key j with 2^(-c_b (r_j - run_min)) <= 1, the
/// max-subtracted softmax numerator; when a chunk lowers run_min, each bandwidth's sum and
/// accumulators are rescaled by 2^(-c_b (run_min_old - run_min_new)): the online-softmax
/// rescale (detail::online_softmax::merge) written in distances. That is the CPU sweep's scheme
/// (src/api/bandwidth.cpp subtracts the row's minimum distance) made streaming, and it is why this
/// is not detail::online_softmax: its maximum score -c_b r_min overflows to -inf for a tiny h
/// and a far-away row, where the distance difference stays finite and the nearest key keeps
/// weight 1. The exp2 is the shared detail::fast_exp2 (ex2.approx on the device).
template <int G, int DVC>
struct loo_row_sweep {
  float run_min = std::numeric_limits<float>::infinity();  ///< +inf until a key is seen
  float sum[G] = {};       ///< per bandwidth: sum_j 2^(-c (r_j - run_min)); >= 1 once a key is seen
  float acc[G][DVC] = {};  ///< per bandwidth: the same weights times the key's values

  /// Adds a chunk of K keys: r[k] their squared distances (overwritten with r[k] - run_min),
  /// bit k of `valid` set for each key that counts (clear for the row's own key and for
  /// padding; those get weight exactly 0 by selection, never by 2^-inf, since neg_c may be -0
  /// for a huge h and -0 * inf is NaN). vals[k * DVC + c]: key k's value in column c. Only the
  /// first `active` bandwidths are updated (a uniform branch on the device).
  template <int K>
  ATTNPOOL_HD void add_chunk(float (&r)[K], unsigned valid, const float (&neg_c)[G], int active,
                             const float* vals) {
    static_assert(K <= 32, "the validity mask is one 32-bit word");
    if (valid == 0) return;
    float cmin = std::numeric_limits<float>::infinity();
    ATTNPOOL_UNROLL
    for (int k = 0; k < K; ++k)
      if ((valid >> k) & 1u) cmin = cmin < r[k] ? cmin : r[k];
    if (cmin < run_min) {
      // A nearer key: rescale every bandwidth onto it. Before the first key the sums are 0 and
      // the factor is irrelevant (it would be 2^(-c * inf)).
      ATTNPOOL_UNROLL
      for (int g = 0; g < G; ++g) {
        const float f = run_min == std::numeric_limits<float>::infinity()
                            ? 0.0f
                            : detail::fast_exp2(neg_c[g] * (run_min - cmin));
        sum[g] *= f;
        ATTNPOOL_UNROLL
        for (int c = 0; c < DVC; ++c) acc[g][c] *= f;
      }
      run_min = cmin;
    }
    ATTNPOOL_UNROLL
    for (int k = 0; k < K; ++k) r[k] -= run_min;  // >= 0 for every valid key
    ATTNPOOL_UNROLL
    for (int g = 0; g < G; ++g) {
      if (g >= active) break;
      // The chunk's partial sums first, folded in once: short sums round less.
      float s = 0.0f;
      float part[DVC];
      ATTNPOOL_UNROLL
      for (int c = 0; c < DVC; ++c) part[c] = 0.0f;
      ATTNPOOL_UNROLL
      for (int k = 0; k < K; ++k) {
        const float p = (valid >> k) & 1u ? detail::fast_exp2(neg_c[g] * r[k]) : 0.0f;
        s += p;
        ATTNPOOL_UNROLL
        for (int c = 0; c < DVC; ++c) part[c] = p * vals[k * DVC + c] + part[c];
      }
      sum[g] += s;
      ATTNPOOL_UNROLL
      for (int c = 0; c < DVC; ++c) acc[g][c] += part[c];
    }
  }

  /// err[g] += sum_{c < cols} (y[c] - yhat_c)^2 for the first `active` bandwidths, with
  /// yhat = acc / sum (sum >= 1 once a key was seen: the nearest contributes 2^0).
  ATTNPOOL_HD void add_errors(const float* y, int cols, int active, double (&err)[G]) const {
    ATTNPOOL_UNROLL
    for (int g = 0; g < G; ++g) {
      if (g >= active) break;
      const float inv = 1.0f / sum[g];
      ATTNPOOL_UNROLL
      for (int c = 0; c < DVC; ++c) {
        if (c < cols) {
          const double e = static_cast<double>(y[c]) - static_cast<double>(acc[g][c] * inv);
          err[g] += e * e;
        }
      }
    }
  }
};

/// The compiled input dimensions: 1, 2, 4 or 8 (zero-padded), else 0 (the generic path, and
/// the empty d = 0).
using loo_d_buckets = detail::dim_buckets<0, 0, 1, 2, 4, 8>;

/// The value-column windows: 1 for dv == 1, else 4.
using loo_dv_buckets = detail::dim_buckets<4, 1, 4>;

/// The compiled input dimension that serves a run-time d (loo_d_buckets).
constexpr int loo_d_bucket(std::size_t d) {
  return loo_d_buckets::bucket(d);
}

/// The value-column window that serves a run-time dv (loo_dv_buckets).
constexpr int loo_dv_bucket(std::size_t dv) {
  return loo_dv_buckets::bucket(dv);
}

/// How many bandwidths one sweep launch evaluates, so that its nb x n row errors (doubles) fit
/// in `budget_bytes`: all nb when they fit, else the largest multiple of kLooGroup that does,
/// never fewer than kLooGroup (one group), never more than the grid's y limit allows.
/// Pure function (tested on the host).
constexpr std::size_t loo_batch_bandwidths(std::size_t n, std::size_t nb,
                                           std::size_t budget_bytes) {
  constexpr std::size_t kMaxGridY = 65535;
  constexpr auto g = static_cast<std::size_t>(kLooGroup);
  const std::size_t per_bandwidth = (n == 0 ? 1 : n) * sizeof(double);
  std::size_t fit = budget_bytes / per_bandwidth / g * g;
  if (fit < g) fit = g;
  if (fit > kMaxGridY * g) fit = kMaxGridY * g;
  return nb < fit ? nb : fit;
}

/// Enqueues the sweep on `stream`: row_error for the a.nb bandwidths (a.nb <= the batch that
/// loo_batch_bandwidths allows, a.n >= 2). Throws cuda_error on a launch failure.
void launch_loo_sweep(const loo_sweep_args& a, stream_t stream);

/// Enqueues cv[b] = (sum_i row_error[b * n + i]) / count for b < nb: one block per bandwidth,
/// each thread adding a fixed stride of rows in order, then a CUB block reduction (a fixed
/// tree for a fixed block size), so the result is bitwise reproducible. Throws cuda_error.
void launch_loo_reduce(const double* row_error, std::size_t n, int nb, double count, double* cv,
                       stream_t stream);

}  // namespace attnpool::kernels
