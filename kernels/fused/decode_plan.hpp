// The key-parallel ("decode") forward for few queries against many keys: its tile constants,
// which calls it serves and its launch plan. Pure host code (no device needed), so the CPU tests
// check the plan; the device side is kernels/fused/decode_agent.cuh.
//
// A block takes one key range and kRows query rows; every thread walks the range with a stride
// of kThreads keys, so the loads are coalesced and each key is read once per block for all its
// rows. The block's per-thread states are merged in a fixed tree and written as one split-K
// partial state per (split, row), in the layout of the default kernels (kernels/fused/params.hpp),
// so that the existing merge kernel finishes the call.
#pragma once

#include <attnpool/detail/dims.hpp>

#include "kernels/fused/plan.hpp"
#include "kernels/fused/split_plan.hpp"

#include <algorithm>
#include <cstddef>

namespace attnpool::kernels {

/// The largest n the decode path takes. The default block holds 128 query rows, so at n <= 64
/// at least half of it idles; on an H100 (2026-11-26) n = 1 and n = 64 against 2^20 keys took
/// 71 and 90 us there. From its SASS the decode kernel needs, on paper, about 4-10 us at n = 1
/// and 35 us at n = 64 (issue-bound: 17.4 instructions and 2 exp2 a pair at 8 rows a block;
/// bench/runs/2026-12-03-gpu-decode-sass.md). Past 64 rows the default blocks are more than half
/// full, and their cost a pair (one exp2, 7.6 instructions) is below this kernel's; where the two
/// cross is for the device to measure.
inline constexpr std::size_t kDecodeMaxRows = 64;
/// The largest query dimension compiled for the decode path (zero-padded to {1, 2, 3, 4, 8}).
inline constexpr std::size_t kDecodeMaxDims = 8;

/// The compiled query dimensions; decode_serves bounds d, so the fallback is never taken.
using decode_d_buckets = detail::dim_buckets<8, 1, 2, 3, 4, 8>;
/// Value windows of at most 8 columns; wider dv runs ceil(dv / 8) windows (grid.y).
using decode_dv_buckets = detail::dim_buckets<8, 1, 2, 4, 8>;

/// Tile constants of fused_decode_kernel<D, DV, R>. Paper choices from register counts, not
/// measured on a GPU.
template <int D, int DV>
struct decode_traits {
  static_assert(D == 1 || D == 2 || D == 3 || D == 4 || D == 8, "decode_traits: D in {1..4, 8}");
  static_assert(DV == 1 || DV == 2 || DV == 4 || DV == 8, "decode_traits: DV in {1, 2, 4, 8}");
  /// 8 warps: enough loads in flight per SM at 4 blocks per SM (below).
  static constexpr int kThreads = 256;
  static constexpr int kWarps = kThreads / 32;
  /// Rows of a block when n > 1: per row a thread keeps D query coordinates, a {max, sum} state
  /// and DV accumulators in registers, so 8 rows while that is <= 6 registers a row, else 4.
  static constexpr int kRows = D + DV + 2 <= 6 ? 8 : 4;
  /// Keys a thread loads before it updates its states: their loads are in flight together.
  static constexpr int kUnroll = D + DV <= 4 ? 4 : 2;
  /// Blocks per SM the split count aims at (32 warps per SM at 256 threads).
  static constexpr int kBlocksPerSm = 4;
  /// A split never holds fewer keys than one full unrolled step of every thread.
  static constexpr std::size_t kMinKeysPerSplit = static_cast<std::size_t>(kThreads) * kUnroll;

  static_assert(kThreads % 32 == 0, "whole warps only");
  static_assert(kRows * (D + DV + 2) + kUnroll * (D + DV) <= 160,
                "live registers per thread must leave room under the 255-register cap");
};

/// Whether the decode path serves a call: the isotropic, unmasked Gaussian (the caller checks
/// that), 1 <= n <= kDecodeMaxRows, 1 <= d <= kDecodeMaxDims, m >= 1 and 1 <= dv with at most
/// 65535 windows of 8 columns (gridDim.y's limit).
constexpr bool decode_serves(std::size_t n, std::size_t m, std::size_t d, std::size_t dv) {
  return n >= 1 && n <= kDecodeMaxRows && m >= 1 && d >= 1 && d <= kDecodeMaxDims && dv >= 1 &&
         dv <= std::size_t{65535} * 8;
}

/// Rows per block of the decode plan for n queries: 1 for a single query, else kRows of the
/// (D, DV) configuration.
template <int D, int DV>
constexpr int decode_rows_for(std::size_t n) {
  return n == 1 ? 1 : decode_traits<D, DV>::kRows;
}

/// The decode plan (decode_serves must hold): d_bucket, dv_bucket (window <= 8), rows_per_block
/// (1 or kRows), grid_x row groups, grid_y value windows, and `splits` key ranges of
/// keys_per_split keys (the last may be shorter, none is empty). The splits fill every SM
/// kBlocksPerSm times but never go below kMinKeysPerSplit keys, and hold a multiple of it (a
/// whole unrolled step of every thread), rounding the count down; `forced_splits` >= 1 requests
/// that many (clamped to [1, min(m, 65535)]). Pure function of its arguments, so the workspace
/// query and the launch agree.
inline fused_plan plan_decode(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                              int sm_count, int forced_splits = 0) {
  const auto ceil_div = [](std::size_t a, std::size_t b) { return (a + b - 1) / b; };
  fused_plan plan;
  std::size_t min_keys = 0;
  std::size_t blocks_per_sm = 0;
  decode_d_buckets::dispatch(d, [&](auto dc) {
    decode_dv_buckets::dispatch(dv, [&](auto dvc) {
      constexpr int D = decltype(dc)::value, DV = decltype(dvc)::value;
      using traits = decode_traits<D, DV>;
      plan.d_bucket = D;
      plan.dv_bucket = DV;
      plan.rows_per_block = static_cast<std::size_t>(decode_rows_for<D, DV>(n));
      min_keys = traits::kMinKeysPerSplit;
      blocks_per_sm = traits::kBlocksPerSm;
    });
  });
  const std::size_t gx = ceil_div(n, plan.rows_per_block);
  const std::size_t gy = ceil_div(dv, static_cast<std::size_t>(plan.dv_bucket));
  plan.grid_x = static_cast<unsigned>(gx);  // n <= 64
  plan.grid_y = static_cast<unsigned>(gy);  // <= 65535 (decode_serves)

  plan_key_splits(plan, m, gx * gy, static_cast<std::size_t>(std::max(sm_count, 1)) * blocks_per_sm,
                  min_keys, forced_splits);
  if (forced_splits <= 0 && plan.splits > 1) {
    // Whole unrolled steps for every thread of every split but the last: the one-key tail loop
    // does not keep all its loads in flight together. Fewer, longer splits, so the limits hold.
    plan.keys_per_split = ceil_div(plan.keys_per_split, min_keys) * min_keys;
    plan.splits = static_cast<int>(ceil_div(m, plan.keys_per_split));
  }
  return plan;
}

}  // namespace attnpool::kernels
