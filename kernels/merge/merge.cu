// The merge kernel of partial softmax states (kernels/merge/states.hpp): split-K's final step,
// and the device side of merge_partials, pool_partial, pool_sharded and the NCCL exchange.
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/merge/states.hpp"

#include <cuda_runtime.h>

#include <algorithm>

namespace attnpool::kernels {
namespace {

// 256 threads = 8 warps, one warp per (row, column) output element; grid-stride.
constexpr unsigned kMergeThreads = 256;
constexpr unsigned kWarp = 32;

// One warp per output element (row, column). Lane l merges shards l, l + 32, l + 64, ... in
// that order, then the 32 lane states are combined by a butterfly of shuffles whose pairing is
// fixed: no atomics and a fixed order, so the result is bitwise reproducible (it is not the
// order 0, 1, ..., S-1, which is no more exact). A sequential merge in one thread made its S
// dependent global loads, not the keys, the cost of skinny split-K shapes (measured on an H100,
// 2026-11-26: n = 1, m = 2^20, 528 splits took 0.172 ms, about 6e9 pairs/s).
// An empty lane state (no shard, or a shard with no key in a compact support) is the merge's
// identity; a row that stays empty is NaN in the normalised output, as in the unsplit kernel.
__global__ void __launch_bounds__(kMergeThreads)
    merge_states_kernel(const const_partials src, const merge_target dst) {
  constexpr unsigned kFull = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const std::size_t dv = src.acc.cols;
  const std::size_t total = src.acc.rows * dv;
  const std::size_t warps = static_cast<std::size_t>(gridDim.x) * (blockDim.x / kWarp);
  for (std::size_t e = (static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
       e < total; e += warps) {  // warp-uniform: every lane of a warp takes the same e
    const std::size_t row = e / dv;
    const std::size_t c = e - row * dv;
    detail::online_softmax softmax;
    float a = 0.0f;
    for (auto z = static_cast<std::size_t>(lane); z < src.shards; z += kWarp) {
      const std::size_t s = z * src.state_stride + row * src.state_step;
      const detail::rescale r = softmax.merge(detail::online_softmax{src.max[s], src.sum[s]});
      a = a * r.self + r.other * src.acc.data[z * src.acc_stride + row * src.acc.ld + c];
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
    if (lane != 0) continue;
    if (dst.out != nullptr) {
      dst.out[row * dst.ldo + c] =
          softmax.empty() ? __int_as_float(0x7fffffff) : a * softmax.inv_sum();
    } else {
      if (c == 0) {
        dst.state.max[row * dst.state.state_step] = softmax.max;
        dst.state.sum[row * dst.state.state_step] = softmax.sum;
      }
      dst.state.acc.data[row * dst.state.acc.ld + c] = a;
    }
  }
}

}  // namespace

void launch_merge_states(const const_partials& src, const merge_target& dst, stream_t stream) {
  const std::size_t total = src.acc.rows * src.acc.cols;
  if (total == 0) return;
  const std::size_t warps_per_block = kMergeThreads / kWarp;
  const std::size_t blocks =
      std::min<std::size_t>((total + warps_per_block - 1) / warps_per_block, std::size_t{1} << 20);
  merge_states_kernel<<<static_cast<unsigned>(blocks), kMergeThreads, 0, stream>>>(src, dst);
  ATTNPOOL_CHECK_LAUNCH("merge_states_kernel");
}

}  // namespace attnpool::kernels
