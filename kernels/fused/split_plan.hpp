// The split-K rule shared by the fused family's plans (plan_fused in kernels/fused/dispatch.cu,
// plan_decode in kernels/fused/decode_plan.hpp): how many key ranges, and how long. Pure host
// code. Its own header, not plan.hpp, so that the kernels' translation units stay as they were.
#pragma once

#include "kernels/fused/plan.hpp"

#include <algorithm>
#include <cstddef>

namespace attnpool::kernels {

/// Fills plan.splits and plan.keys_per_split for m keys and a grid of `blocks` blocks a split:
/// `forced_splits` >= 1 requests that many; else enough splits that the grid covers
/// `target_blocks` blocks (flash-decoding), but none shorter than `min_keys` keys. Then clamped
/// to [1, min(m, 65535)] (gridDim.z's limit; every split holds a key), cut into equal ranges and
/// recounted so that the last range is not empty.
inline void plan_key_splits(fused_plan& plan, std::size_t m, std::size_t blocks,
                            std::size_t target_blocks, std::size_t min_keys, int forced_splits) {
  constexpr std::size_t kMaxSplits = 65535;
  const auto ceil_div = [](std::size_t a, std::size_t b) { return (a + b - 1) / b; };
  std::size_t splits = 1;
  if (forced_splits > 0) {
    splits = static_cast<std::size_t>(forced_splits);
  } else if (blocks < target_blocks) {
    splits = std::min(ceil_div(target_blocks, blocks), std::max<std::size_t>(1, m / min_keys));
  }
  splits = std::clamp<std::size_t>(splits, 1, std::min(m, kMaxSplits));
  plan.keys_per_split = ceil_div(m, splits);
  plan.splits = static_cast<int>(ceil_div(m, plan.keys_per_split));
}

}  // namespace attnpool::kernels
