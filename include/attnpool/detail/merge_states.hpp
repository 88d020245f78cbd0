// The host merge of partial softmax states (merge_partials, mpi::pool): in double, onto each
// row's largest reference, shards in order 0, 1, ..., S - 1. Double because every shard's
// accumulator may be near float32's range and their weighted sum exceed it where the normalised
// result does not; one function so that a merge over ranks is bitwise the one in one process.
#pragma once

#include <attnpool/types.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace attnpool::detail {

/// One shard's state for one query row: its reference (log2 units), sum and dv accumulators.
struct shard_row {
  float max;
  float sum;
  const float* acc;
};

/// Writes the normalised rows of `shards` merged states into out (n x dv); `at(s, i)` gives
/// shard s's row i as a shard_row. A row no shard saw a key for (every max is -inf) is NaN.
template <class StateAt>
void merge_states(std::size_t shards, StateAt&& at, mutable_view out) {
  constexpr double kNone = -std::numeric_limits<double>::infinity();
  const std::size_t dv = out.cols;
  std::vector<double> acc(dv);
  for (std::size_t i = 0; i < out.rows; ++i) {
    double ref = kNone;
    for (std::size_t s = 0; s < shards; ++s) ref = std::max(ref, static_cast<double>(at(s, i).max));
    if (ref == kNone) {
      for (std::size_t c = 0; c < dv; ++c) out(i, c) = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    double sum = 0.0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (std::size_t s = 0; s < shards; ++s) {
      const shard_row r = at(s, i);
      if (static_cast<double>(r.max) == kNone) continue;  // the merge's identity
      const double w = std::exp2(static_cast<double>(r.max) - ref);
      sum += w * r.sum;
      for (std::size_t c = 0; c < dv; ++c) acc[c] += w * r.acc[c];
    }
    for (std::size_t c = 0; c < dv; ++c) out(i, c) = static_cast<float>(acc[c] / sum);
  }
}

}  // namespace attnpool::detail
