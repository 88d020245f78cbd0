// The merge of partial softmax states, shared by split-K (kernels/fused/dispatch.cu), pool_partial,
// merge_partials and the multi-GPU / NCCL paths. Host-includable (no device code).
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::kernels {

/// S partial states stacked in device memory. Shard s, row i:
///   max  at max[s * state_shard_stride + i * state_row_step]
///   sum  at sum[s * state_shard_stride + i * state_row_step]
///   acc  row at acc + s * acc_shard_stride + i * acc_ld (dv floats)
/// Split-K's workspace interleaves {max, sum} (state_row_step 2, sum = max + 1); the packed
/// layout of the public API (cuda::packed_partials) has state_row_step 1.
struct stacked_states {
  const float* max = nullptr;
  const float* sum = nullptr;
  std::size_t state_row_step = 1;
  std::size_t state_shard_stride = 0;
  const float* acc = nullptr;
  std::size_t acc_ld = 0;
  std::size_t acc_shard_stride = 0;
  int shards = 0;
  std::size_t n = 0;
  int dv = 0;
};

/// Where merged states go. out set: the normalised result (n x dv, row stride ldo), NaN for a
/// row that no shard saw a key for (a compact kernel's empty support). out null: the merged,
/// unnormalised state itself, max[i], sum[i] and acc row i (row stride acc_ld).
struct merge_target {
  float* out = nullptr;
  std::size_t ldo = 0;
  float* max = nullptr;
  float* sum = nullptr;
  float* acc = nullptr;
  std::size_t acc_ld = 0;
};

/// Enqueues the merge on `stream`: for every (row, column), one warp merges the S states with
/// detail::online_softmax::merge, lane l taking shards l, l + 32, ... in order, then a butterfly
/// of shuffles with a fixed pairing. A fixed order and no atomics, so the result is bitwise
/// reproducible. No-op for n == 0 or dv == 0. Throws cuda_error on a launch failure.
void launch_merge_states(const stacked_states& src, const merge_target& dst, stream_t stream);

}  // namespace attnpool::kernels
