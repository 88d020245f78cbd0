// Planning of the fused forward family: which compiled (D, DV) serves a call, its grid and its
// split-K, and the block table of a batched launch. Pure host functions, no device needed.
#pragma once

#include <attnpool/detail/dims.hpp>

#include "kernels/fused/params.hpp"

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

namespace attnpool::kernels {

using detail::dim_c;

/// The compiled query dimensions: {1, 2, 3, 4, 8, 16, 32, 64}, zero-padded up to the bucket;
/// D = 0 is the generic path (d > 64, and the empty d = 0).
using fused_d_buckets = detail::dim_buckets<0, 0, 1, 2, 3, 4, 8, 16, 32, 64>;

/// The value-column windows: the smallest power of two >= dv, capped at 64 (wider dv runs
/// ceil(dv / 64) windows).
using fused_dv_buckets = detail::pow2_dims_to_64;

/// The compiled query dimension that serves a run-time d: the smallest of {1, 2, 3, 4, 8, 16,
/// 32, 64} that is >= d, else 0 (generic path).
constexpr int fused_d_bucket(std::size_t d) {
  return fused_d_buckets::bucket(d);
}

/// The value-column window that serves a run-time dv (fused_dv_buckets).
constexpr int fused_dv_bucket(std::size_t dv) {
  return fused_dv_buckets::bucket(dv);
}

/// f(dim_c<D>{}, dim_c<DV>{}) for a fixed D and the window that serves dv (a bucket itself
/// serves itself, so plan.dv_bucket may be passed as dv).
template <int D, class F>
decltype(auto) dispatch_dv(std::size_t dv, F&& f) {
  return fused_dv_buckets::dispatch(dv, [&](auto dvc) { return f(dim_c<D>{}, dvc); });
}

/// THE runtime-to-compile-time switch of the fused family: calls f(dim_c<D>{}, dim_c<DV>{}) for
/// the compiled configuration that serves (d, dv). Every (D, DV) it can name is instantiated in
/// kernels/fused/inst/d*.cu.
template <class F>
decltype(auto) dispatch_dims(std::size_t d, std::size_t dv, F&& f) {
  return fused_d_buckets::dispatch(d, [&](auto dc) {
    return fused_dv_buckets::dispatch(dv, [&](auto dvc) { return f(dc, dvc); });
  });
}

/// How one fused call is laid out on the GPU.
struct fused_plan {
  int d_bucket = 0, dv_bucket = 0;  ///< the compiled (D, DV)
  unsigned grid_x = 0;              ///< blocks of kRowsPerBlock query rows
  unsigned grid_y = 0;              ///< value-column windows of DV columns
  int splits = 1;                   ///< grid_z: key ranges (1 = no split-K)
  std::size_t keys_per_split = 0;
  std::size_t rows_per_block = 0;
};

/// Picks the configuration and split-K for a problem. `sm_count` is the device's multiprocessor
/// count; `forced_splits` 0 lets the heuristic decide, >= 1 requests that many key ranges
/// (clamped so that every range holds at least one key). `generic_score`: the call runs the
/// generic-score instantiations (uses_generic_score), whose tiles are those of D = 0. Pure function
/// of its arguments, so the workspace query and the launch agree on the same device.
fused_plan plan_fused(std::size_t n, std::size_t m, std::size_t d, std::size_t dv, int sm_count,
                      int forced_splits = 0, bool generic_score = false);

/// Query rows one block of the (d, dv) configuration handles (fused_traits::kRowsPerBlock).
std::size_t fused_rows_per_block(std::size_t d, std::size_t dv, bool generic_score = false);

/// The block table of a batched launch: problem b's query rows [query_offsets[b],
/// query_offsets[b + 1]) cut into blocks of at most rows_per_block rows, each against the keys
/// [key_offsets[b], key_offsets[b + 1]); problems without queries get no block. Offsets must be
/// validated (B + 1 each, non-decreasing). Host code, no device needed.
std::vector<fused_block> plan_batch_blocks(std::span<const std::size_t> query_offsets,
                                           std::span<const std::size_t> key_offsets,
                                           std::size_t rows_per_block);

/// An upper bound on plan_batch_blocks(...).size() that needs only the totals: every problem
/// wastes at most one partial block, so ceil(total_rows / rows_per_block) + problems.
std::size_t max_batch_blocks(std::size_t problems, std::size_t total_rows,
                             std::size_t rows_per_block);

/// The plan of a batched launch over `blocks` table entries: the compiled (D, DV), grid_x =
/// blocks, the value windows, no split-K.
fused_plan plan_fused_batched(std::size_t blocks, std::size_t d, std::size_t dv,
                              bool generic_score = false);

}  // namespace attnpool::kernels
