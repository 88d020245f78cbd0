/// \file
/// The streaming (max-rescaled) softmax state in log2 units, its update and its merge: the
/// algorithm of the fused kernels, the CPU engine and every merge of partial states.
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>

#include <limits>

namespace attnpool::detail {

/// Factors that rescale two partial accumulators onto a common maximum.
struct rescale {
  float self;   ///< multiply the existing accumulator by this
  float other;  ///< multiply the incoming contribution by this
};

/// Running state of a streaming (max-rescaled) softmax in log2 units: the largest score seen,
/// and the sum of 2^(s - max) over the keys seen. The weighted value accumulator lives beside
/// it, sized by the caller (registers on the GPU, a row buffer on the CPU), and is rescaled
/// with the factors that update() and merge() return:
///   acc = acc * r.self + r.other * contribution.
/// Invariant: max == -inf iff no key has been seen, and then sum == 0.
struct online_softmax {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0.0f;

  /// Adds one key with log2 score s; the contribution to scale is that key's value row.
  /// A score of -inf (a masked key, or one outside a compact kernel's support) leaves the state
  /// unchanged, also while it is empty (where -inf - -inf would otherwise be NaN).
  ATTNPOOL_HD rescale update(float s) {
    const float new_max = s > max ? s : max;
    if (new_max == -std::numeric_limits<float>::infinity()) return {1.0f, 0.0f};  // still empty
    const rescale r{fast_exp2(max - new_max), fast_exp2(s - new_max)};
    sum = sum * r.self + r.other;
    max = new_max;
    return r;
  }

  /// Merges another partial state (over a disjoint set of keys). Associative and, up to
  /// rounding, commutative; an empty state is its identity. The contribution to scale is the
  /// other state's accumulator.
  ATTNPOOL_HD rescale merge(const online_softmax& o) {
    const float new_max = o.max > max ? o.max : max;
    if (new_max == -std::numeric_limits<float>::infinity()) return {1.0f, 0.0f};  // both empty
    const rescale r{fast_exp2(max - new_max), fast_exp2(o.max - new_max)};
    sum = sum * r.self + o.sum * r.other;
    max = new_max;
    return r;
  }

  /// Whether no key with a finite score was seen: a query with no key in a compact kernel's
  /// support. inv_sum() is then inf and acc * inv_sum() NaN; callers apply the empty-support
  /// policy (pool_params::empty) instead.
  /// (NaN inputs, which options.check_finite rejects, are not "empty": they stay NaN.)
  ATTNPOOL_HD bool empty() const { return max == -std::numeric_limits<float>::infinity(); }

  /// The normaliser that turns the accumulator into the pooled output: out = acc * inv_sum().
  /// sum >= 1 whenever a key with a finite score was seen (the maximum contributes 2^0), so
  /// this is finite unless empty().
  ATTNPOOL_HD float inv_sum() const { return 1.0f / sum; }
};

}  // namespace attnpool::detail
