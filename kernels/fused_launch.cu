// Dispatch layer of the fused family: the launch plan (configuration, grid, split-K), the
// launch through dispatch_dims, and the split-K merge kernel.
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/error.hpp>

#include "cuda/cuda_check.hpp"
#include "fused_pool.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <limits>

namespace attnpool::kernels {
namespace {

// Split-K never cuts the keys finer than this: below it the per-split fixed cost (loading the
// queries, writing and merging a partial state) outweighs the parallelism gained. A paper
// estimate (4 tiles of 128 keys), not yet measured.
constexpr std::size_t kMinKeysPerSplit = 512;
// gridDim.z's hardware limit.
constexpr std::size_t kMaxSplits = 65535;

constexpr unsigned kMergeThreads = 256;

std::size_t ceil_div(std::size_t a, std::size_t b) {
  return (a + b - 1) / b;
}

// Merges the splits of each (row, column): one warp per output element. Lane l merges splits
// l, l + 32, l + 64, ... in that order, then the 32 lane states are combined by a butterfly of
// shuffles whose pairing is fixed: no atomics and a fixed order, so the result is bitwise
// reproducible (it is not the order 0, 1, ..., S-1, which is no more exact). The first version
// merged the S splits of an element sequentially in one thread; its S dependent global loads made
// the merge, not the keys, the cost of skinny shapes (measured on an H100, 2026-11-26: n = 1,
// m = 2^20, 528 splits took 0.172 ms, about 6e9 pairs/s).
// Every split holds at least one key (plan_fused), so the final sum is >= 1, except for a row
// with no key in a compact kernel's support: that row is NaN, as in the unsplit kernel.
__global__ void __launch_bounds__(kMergeThreads)
    fused_merge_kernel(const float* __restrict__ state, const float* __restrict__ acc, int splits,
                       std::size_t n, int dv, float* __restrict__ out, std::size_t ldo) {
  constexpr unsigned kFull = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::size_t total = n * static_cast<std::size_t>(dv);
  const std::size_t warps = static_cast<std::size_t>(gridDim.x) * (blockDim.x / 32);
  for (std::size_t e = (static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
       e < total; e += warps) {  // warp-uniform: every lane of a warp takes the same e
    const std::size_t row = e / static_cast<std::size_t>(dv);
    const std::size_t c = e - row * static_cast<std::size_t>(dv);
    detail::online_softmax softmax;
    float a = 0.0f;
    for (int z = lane; z < splits; z += 32) {
      const std::size_t slot = static_cast<std::size_t>(z) * n + row;
      const detail::rescale r =
          softmax.merge(detail::online_softmax{state[2 * slot], state[2 * slot + 1]});
      a = a * r.self + r.other * acc[slot * static_cast<std::size_t>(dv) + c];
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      const detail::online_softmax other{__shfl_xor_sync(kFull, softmax.max, offset),
                                         __shfl_xor_sync(kFull, softmax.sum, offset)};
      const float other_acc = __shfl_xor_sync(kFull, a, offset);
      // Both lanes of a pair must compute the same merge bitwise: the lower lane's state is
      // always the left operand.
      const bool lower = (lane & offset) == 0;
      detail::online_softmax left = lower ? softmax : other;
      const detail::online_softmax right = lower ? other : softmax;
      const float left_acc = lower ? a : other_acc, right_acc = lower ? other_acc : a;
      const detail::rescale r = left.merge(right);
      softmax = left;
      a = left_acc * r.self + r.other * right_acc;
    }
    if (lane == 0)
      out[row * ldo + c] = softmax.empty() ? __int_as_float(0x7fffffff) : a * softmax.inv_sum();
  }
}

}  // namespace

fused_plan plan_fused(std::size_t n, std::size_t m, std::size_t d, std::size_t dv, int sm_count,
                      int forced_splits, bool any_kernel) {
  fused_plan plan;
  plan.d_bucket = any_kernel ? 0 : fused_d_bucket(d);
  plan.dv_bucket = fused_dv_bucket(dv);
  struct shape_consts {
    std::size_t rows_per_block, blocks_per_sm;
  };
  const auto consts = [](auto dc, auto dvc) {
    using traits = fused_traits<decltype(dc)::value, decltype(dvc)::value>;
    return shape_consts{static_cast<std::size_t>(traits::kRowsPerBlock),
                        static_cast<std::size_t>(traits::kBlocksPerSm)};
  };
  // The any-kernel path is compiled for the generic D = 0 only.
  const shape_consts k = any_kernel ? dispatch_impl::dispatch_dv<0>(plan.dv_bucket, consts)
                                    : dispatch_dims(d, dv, consts);
  plan.rows_per_block = k.rows_per_block;
  const std::size_t gx = ceil_div(n, k.rows_per_block);
  const std::size_t gy = ceil_div(dv, static_cast<std::size_t>(plan.dv_bucket));
  ATTNPOOL_EXPECTS(gx <= static_cast<std::size_t>(std::numeric_limits<int>::max()),
                   "cuda fused pool: n = ", n, " needs more than 2^31 - 1 blocks");
  ATTNPOOL_EXPECTS(gy <= 65535, "cuda fused pool: dv = ", dv,
                   " needs more than 65535 value "
                   "windows of ",
                   plan.dv_bucket, " columns");
  plan.grid_x = static_cast<unsigned>(gx);
  plan.grid_y = static_cast<unsigned>(gy);

  std::size_t splits = 1;
  if (forced_splits > 0) {
    splits = static_cast<std::size_t>(forced_splits);
  } else {
    // Flash-decoding: when the query blocks cannot fill the GPU, cut the keys into ranges so
    // that the grid covers every SM kBlocksPerSm times, but never below kMinKeysPerSplit keys.
    const std::size_t target = static_cast<std::size_t>(std::max(sm_count, 1)) * k.blocks_per_sm;
    const std::size_t blocks = gx * gy;
    if (blocks < target) {
      splits = std::min(ceil_div(target, blocks), std::max<std::size_t>(1, m / kMinKeysPerSplit));
    }
  }
  splits = std::clamp<std::size_t>(splits, 1, std::min(m, kMaxSplits));
  // Equal ranges, then recount so that the last range is not empty.
  plan.keys_per_split = ceil_div(m, splits);
  plan.splits = static_cast<int>(ceil_div(m, plan.keys_per_split));
  return plan;
}

std::size_t fused_partial_bytes(const fused_plan& plan, std::size_t n, std::size_t dv) {
  if (plan.splits <= 1) return 0;
  const auto s = static_cast<std::size_t>(plan.splits);
  return align_up(s * n * 2 * sizeof(float)) + align_up(s * n * dv * sizeof(float));
}

void launch_fused(fused_args args, const fused_plan& plan, stream_t stream,
                  const any_kernel_args* any) {
  args.splits = plan.splits;
  args.keys_per_split = plan.keys_per_split;
  const std::size_t n = args.n;
  const auto dv = static_cast<std::size_t>(args.dv);
  float* final_out = args.out;
  if (plan.splits > 1) {
    // Partial results only; the merge kernel writes `out`.
    args.out = nullptr;
  }
  if (any != nullptr) {
    ATTNPOOL_EXPECTS(plan.d_bucket == 0, "launch_fused: a non-Gaussian or anisotropic call needs ",
                     "a plan made with any_kernel = true");
    dispatch_impl::dispatch_dv<0>(plan.dv_bucket, [&](auto dc, auto dvc) {
      launch_fused_config<decltype(dc)::value, decltype(dvc)::value, detail::any_log2_score>(
          args, plan, stream, any);
    });
  } else {
    dispatch_dims(static_cast<std::size_t>(args.d), dv, [&](auto dc, auto dvc) {
      launch_fused_config<decltype(dc)::value, decltype(dvc)::value>(args, plan, stream);
    });
  }
  if (plan.splits > 1) {
    const std::size_t warps_per_block = kMergeThreads / 32;
    const std::size_t blocks =
        std::min<std::size_t>(ceil_div(n * dv, warps_per_block), std::size_t{1} << 20);
    fused_merge_kernel<<<static_cast<unsigned>(blocks), kMergeThreads, 0, stream>>>(
        args.partial_state, args.partial_acc, plan.splits, n, args.dv, final_out, args.ldo);
    ATTNPOOL_CHECK_LAUNCH("fused_merge_kernel");
  }
}

}  // namespace attnpool::kernels
