// Planning of the fused forward family: which compiled (D, DV) serves a call, its grid and its
// split-K, and the block table of a batched launch. Pure host functions, no device needed.
#pragma once

#include "kernels/fused/params.hpp"

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

namespace attnpool::kernels {

/// Compile-time dimension tag handed to dispatch_dims' callback.
template <int N>
using dim_c = std::integral_constant<int, N>;

/// The compiled query dimension that serves a run-time d: the smallest of {1, 2, 3, 4, 8, 16,
/// 32, 64} that is >= d, else 0 (generic path).
constexpr int fused_d_bucket(std::size_t d) {
  if (d <= 4) return static_cast<int>(d);
  if (d <= 8) return 8;
  if (d <= 16) return 16;
  if (d <= 32) return 32;
  if (d <= 64) return 64;
  return 0;
}

/// The value-column window that serves a run-time dv: the smallest power of two >= dv, capped
/// at 64 (wider dv runs ceil(dv / 64) windows).
constexpr int fused_dv_bucket(std::size_t dv) {
  int b = 1;
  while (b < 64 && static_cast<std::size_t>(b) < dv) b *= 2;
  return b;
}

namespace dispatch_impl {
template <int D, class F>
decltype(auto) dispatch_dv(int dv_bucket, F&& f) {
  switch (dv_bucket) {
    case 1:
      return f(dim_c<D>{}, dim_c<1>{});
    case 2:
      return f(dim_c<D>{}, dim_c<2>{});
    case 4:
      return f(dim_c<D>{}, dim_c<4>{});
    case 8:
      return f(dim_c<D>{}, dim_c<8>{});
    case 16:
      return f(dim_c<D>{}, dim_c<16>{});
    case 32:
      return f(dim_c<D>{}, dim_c<32>{});
    default:
      return f(dim_c<D>{}, dim_c<64>{});
  }
}
}  // namespace dispatch_impl

/// THE runtime-to-compile-time switch of the fused family: calls f(dim_c<D>{}, dim_c<DV>{}) for
/// the compiled configuration that serves (d, dv). Every (D, DV) it can name is instantiated in
/// kernels/fused/inst/d*.cu.
template <class F>
decltype(auto) dispatch_dims(std::size_t d, std::size_t dv, F&& f) {
  const int dvb = fused_dv_bucket(dv);
  switch (fused_d_bucket(d)) {
    case 1:
      return dispatch_impl::dispatch_dv<1>(dvb, f);
    case 2:
      return dispatch_impl::dispatch_dv<2>(dvb, f);
    case 3:
      return dispatch_impl::dispatch_dv<3>(dvb, f);
    case 4:
      return dispatch_impl::dispatch_dv<4>(dvb, f);
    case 8:
      return dispatch_impl::dispatch_dv<8>(dvb, f);
    case 16:
      return dispatch_impl::dispatch_dv<16>(dvb, f);
    case 32:
      return dispatch_impl::dispatch_dv<32>(dvb, f);
    case 64:
      return dispatch_impl::dispatch_dv<64>(dvb, f);
    default:
      return dispatch_impl::dispatch_dv<0>(dvb, f);
  }
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
/// generic-score instantiations (uses_generic_score), whose tiles are those of D = 0. Pure function of
/// its arguments, so the workspace query and the launch agree on the same device.
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
