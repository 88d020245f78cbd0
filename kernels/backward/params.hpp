// The fused backward pass of attention pooling on the GPU, FlashAttention style: the
// n x m matrix is never stored. Host-includable (no device code): src/cuda/backward.cpp plans
// and launches through this header; kernels/backward/kernel.cuh holds the device side and
// kernels/backward/rows.cu, keys.cu and tiled.cu instantiate it; the per-thread work is
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
// The tiled kernels (tiled_backward()) run phases 1 and 2 over shared-memory tiles, each split
// into ranges of the side it walks whose partial sums a merge kernel adds in range order.
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

/// Blocks of kThreads rows (or keys) covering `rows`; the host side checked the grid limit.
template <int D>
constexpr unsigned backward_blocks(std::size_t rows) {
  constexpr std::size_t t = backward_traits<D>::kThreads;
  return static_cast<unsigned>((rows + t - 1) / t);
}

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

/// The key phase's value windows (grid.y): ceil(dv / window), or one without dv (window 0 also
/// writes dk).
template <int D, bool kDv1>
unsigned backward_windows(const backward_args& a) {
  constexpr int kW = backward_value_window<D, kDv1>;
  return a.dvv == nullptr ? 1u : static_cast<unsigned>((a.dv + kW - 1) / kW);
}

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

/// The tiled backward kernels (tiled_backward()): the rows phase stages the keys (and values for
/// dv == 1) of a tile in shared memory for a block of kThreads rows, the keys phase the queries,
/// lse2, D_i and dout_i[0] for a block of kThreads keys; each phase splits the side it walks
/// into ranges for more blocks, and a merge kernel combines the ranges' partial sums in a fixed
/// order (no atomics: bitwise repeatable, and with one range bitwise the untiled kernels).
///
/// Tuning: chosen on paper (not yet run on a GPU): tiles of 16 KiB of coordinates at most, so
/// that several blocks share an SM's shared memory; ranges until about 16 blocks of 128
/// threads per SM (2048 threads, the SM's maximum); partials at most kMaxPartialBytes.
template <int D>
struct backward_tiled_traits {
  /// Keys (rows phase) or queries (keys phase) per shared-memory tile: a multiple of the row
  /// phase's chunk, so that tiles and ranges start on chunk boundaries.
  static constexpr int kTile = D <= 4 ? 1024 : 4096 / D;
  static_assert(kTile % backward_traits<D>::kChunk == 0, "tiles hold whole chunks");
  /// Floats of one row's partial row_sums (max, z, c, rr, qr, b[D], g[D]).
  static constexpr int kRowPartial = 5 + 2 * D;
};

/// Blocks per SM the ranges aim at (128-thread blocks: 2048 threads).
inline constexpr std::size_t kBackwardBlocksPerSm = 16;
/// The most ranges a phase is split into.
inline constexpr std::size_t kMaxBackwardSplits = 32;
/// The most bytes of partial sums a phase keeps (fewer ranges where they would pass it).
inline constexpr std::size_t kMaxPartialBytes = std::size_t{256} << 20;

/// How a phase walks its side: `splits` ranges of `per_split` items (the last one shorter),
/// each a multiple of the tile.
struct backward_split {
  std::size_t splits = 1;
  std::size_t per_split = 0;
};

/// The ranges for a phase whose grid holds `blocks` blocks without splitting, walking `walked`
/// items in tiles of `tile`, with `partial_floats` floats of partial sums per block thread and
/// range (the partials of `items` threads). forced > 0 takes that many ranges (tests).
constexpr backward_split plan_backward_split(std::size_t blocks, std::size_t items,
                                             std::size_t walked, std::size_t tile,
                                             std::size_t partial_floats, int sm_count,
                                             std::size_t forced = 0) {
  backward_split sp;
  const std::size_t tiles = walked == 0 ? 1 : (walked + tile - 1) / tile;
  std::size_t s = forced;
  if (s == 0) {
    const std::size_t target =
        static_cast<std::size_t>(sm_count > 0 ? sm_count : 1) * kBackwardBlocksPerSm;
    s = blocks >= target ? 1 : (target + blocks - 1) / blocks;
    s = s < kMaxBackwardSplits ? s : kMaxBackwardSplits;
    const std::size_t per_split_bytes = items * partial_floats * sizeof(float);
    const std::size_t by_bytes = per_split_bytes == 0 ? s : kMaxPartialBytes / per_split_bytes;
    s = s < by_bytes ? s : by_bytes;
  }
  s = s < tiles ? s : tiles;
  s = s > 0 ? s : 1;
  sp.per_split = (tiles + s - 1) / s * tile;
  sp.splits = walked == 0 ? 1 : (walked + sp.per_split - 1) / sp.per_split;
  return sp;
}

/// Whether the backward pass takes the tiled kernels: ATTNPOOL_CUDA_TILED_BACKWARD=1, read once.
/// Off by default until a GPU run has passed the GPU tests and compute-sanitizer with it.
bool tiled_backward();

/// The ranges of the rows phase (keys split) and of the keys phase (queries split).
backward_split plan_backward_rows(std::size_t n, std::size_t m, std::size_t d, int sm_count);
backward_split plan_backward_keys(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                  int sm_count);
/// Floats of partial sums the tiled kernels need with these plans (0 where each phase takes one
/// range).
std::size_t backward_partial_floats(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                    const backward_split& rows, const backward_split& keys);

/// The tiled phases: as launch_backward_rows / launch_backward_keys, their ranges' partial sums
/// in `partials` (backward_partial_floats) and merged there when a phase has several ranges.
void launch_backward_rows_tiled(const backward_args& a, const backward_split& sp, float* partials,
                                stream_t stream);
void launch_backward_keys_tiled(const backward_args& a, const backward_split& sp, float* partials,
                                stream_t stream);

/// Phase 1: lse2 and dsum (always), dq (when a.dq) and dh_rows (when a.dh_rows). Throws
/// cuda_error on a launch failure.
void launch_backward_rows(const backward_args& a, stream_t stream);
/// Phase 2: dk (when a.dk) and dv (when a.dvv); needs phase 1's lse2 and dsum.
void launch_backward_keys(const backward_args& a, stream_t stream);
/// Phase 3: *dh = scale * sum_i dh_rows[i], summed in double in a fixed order (one block).
void launch_backward_dh(const float* dh_rows, std::size_t n, double scale, double* dh,
                        stream_t stream);

}  // namespace attnpool::kernels
