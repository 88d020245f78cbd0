/// \file
/// Keys sharded over several GPUs in one process: each device computes
/// the partial softmax states of its key shards on its own stream, and the states are merged in
/// one fixed order on the first device. See docs/scaling.md.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>
#include <span>

namespace attnpool {

/// How pool_sharded() splits the keys.
struct sharding {
  /// The devices to use, by CUDA ordinal; empty (the default) = every visible device. The same
  /// ordinal may appear more than once (it then takes a larger share of the shards).
  std::span<const int> devices{};
  /// Key shards; 0 (the default) = one per device. Shard s holds keys [m s / S, m (s + 1) / S)
  /// and runs on devices[s % devices.size()], so S > devices works (several shards per device,
  /// one after another on that device's stream). Clamped to m, so that no shard is empty.
  std::size_t shards = 0;
};

/// attnpool::pool over host memory with the keys split into shards over the GPUs: one stream per
/// device; each device receives the queries and its shards' keys and values, computes their
/// partial states (cuda::pool_partial) and sends them (n x (dv + 2) floats per shard) to the
/// first device, which merges them in a fixed order (cuda::merge_partials) and returns the result.
/// The order is fixed, so the result is bitwise deterministic for a given sharding; it equals
/// the unsharded pool() within float32 rounding. Synchronises every device it uses; the calling
/// thread's current device is restored.
/// \param params as for pool(); params.mask must be none and empty_support::nearest is refused
///               for compact kernels (a shard does not know the other shards' keys)
/// \param opts   backend must be automatic or cuda_fused; check_finite runs on the host data
/// \throws invalid_argument as pool() does, and for a device ordinal out of range;
///         cuda_error without a usable device (or in a build without CUDA).
void pool_sharded(const_view queries, const_view keys, const_view values, mutable_view out,
                  const pool_params& params = {}, const sharding& how = {},
                  const options& opts = {});

}  // namespace attnpool
