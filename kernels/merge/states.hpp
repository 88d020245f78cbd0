// The merge of partial softmax states, shared by split-K (kernels/fused/dispatch.cu), pool_partial,
// merge_partials and the multi-GPU / NCCL paths. Host-includable (no device code).
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::kernels {

/// Where merged states go. out set: the normalised result (n x dv, row stride ldo), NaN for a
/// row that no shard saw a key for (a compact kernel's empty support). out null: the merged,
/// unnormalised state itself, one shard of `state` (max, sum and acc row i).
struct merge_target {
  float* out = nullptr;
  std::size_t ldo = 0;
  mutable_partials state;
};

/// Enqueues the merge on `stream`: for every (row, column), one warp merges the S states with
/// detail::online_softmax::merge, lane l taking shards l, l + 32, ... in order, then a butterfly
/// of shuffles with a fixed pairing. A fixed order and no atomics, so the result is bitwise
/// reproducible. No-op for n == 0 or dv == 0. Throws cuda_error on a launch failure.
/// `src` is S partial states in device memory (attnpool::partials_view: split-K's interleaved
/// workspace, or the public packed layout), n = src.acc.rows and dv = src.acc.cols.
void launch_merge_states(const const_partials& src, const merge_target& dst, stream_t stream);

}  // namespace attnpool::kernels
