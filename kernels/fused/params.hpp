// Parameters of the fused forward family: plain data, passed by value as the kernel parameter
// (FlashAttention's params struct). Host-includable.
#pragma once

#include <attnpool/detail/mask.hpp>
#include <attnpool/types.hpp>

#include "kernels/common/params.hpp"

#include <cstddef>

namespace attnpool::kernels {

/// One block of a batched launch (pool_batched): query rows [row_begin, row_end) of one problem
/// (at most kRowsPerBlock of them) against that problem's keys [key_begin, key_end). Row and key
/// indices are into the concatenated buffers, so the output row is the query row.
struct fused_block {
  std::size_t row_begin = 0, row_end = 0;
  std::size_t key_begin = 0, key_end = 0;
};

/// Everything one launch of the Gaussian fast path reads: the problem (problem_args), the
/// output, the score constant, split-K and batch blocks. Plain data, passed by value as the
/// kernel parameter (FlashAttention's Flash_fwd_params). The generic-score path reads
/// generic_score_args beside it.
struct fused_args : problem_args {
  float* out = nullptr;  ///< n x dv, row stride ldo (written when partial_acc is null)
  std::size_t ldo = 0;
  /// The score functor's constant, detail::kernel_constant(kind, h): -log2(e) / (2 h^2) for the
  /// Gaussian, +1 / h^2 for the compact kernels.
  float score_constant = 0.0f;

  // Split-K (flash-decoding): block z handles keys [z * keys_per_split, (z + 1) * keys_per_split).
  int splits = 1;
  std::size_t keys_per_split = 0;
  float* partial_state = nullptr;  ///< splits x n x {max, sum}          (splits > 1 only)
  float* partial_acc = nullptr;    ///< splits x n x dv unnormalised acc (splits > 1 only)
  // (When partial_acc is set the kernel writes partial states even for splits == 1: that is how
  // pool_partial gets unnormalised states; the merge kernel then writes them out.)

  // Batched launch (pool_batched): block x runs batch_blocks[blockIdx.x] (device memory, grid_x
  // entries, built by plan_batch_blocks) instead of rows [x * kRowsPerBlock, ...) against
  // every key; n is then the total number of query rows, splits 1. Null: one problem.
  const fused_block* batch_blocks = nullptr;
};

/// What the generic-score instantiations (kernels/fused/inst/generic_score.cu: non-Gaussian
/// kernels, anisotropic bandwidths, masks) read on top of fused_args. A second kernel parameter
/// rather than more fields of fused_args, so that the Gaussian fast path's parameter block, and
/// with it its code, stays exactly as it was (a 256-byte array in fused_args changed how nvcc
/// addresses the whole block).
struct generic_score_args {
  attnpool::kernel kind = attnpool::kernel::gaussian;
  /// Anisotropic bandwidth: 1 = squared differences are weighted by dim_weights[c] = 1 / h_c^2
  /// (d <= kMaxGpuAnisotropicDims; the functor's h is then 1). In the parameter block, so no
  /// device copy is needed and the call stays asynchronous.
  int weighted = 0;
  float dim_weights[kMaxGpuAnisotropicDims] = {};
  /// Which keys each query sees (pool_params::mask): a masked key's distance becomes +inf, so
  /// its score is -inf and its weight exactly 0, with no n x m mask stored. Masked calls run
  /// this path whatever the kernel, so the Gaussian fast path's code stays mask-free.
  /// mask::valid_length: valid_lens holds n counts in device memory (the caller's workspace).
  detail::mask_rule mask;
};

}  // namespace attnpool::kernels
