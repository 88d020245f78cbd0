// Device side of the key-parallel ("decode") forward (kernels/fused/decode_plan.hpp): included
// only by kernels/fused/inst/decode_d*.cu, each of which instantiates launch_decode_config for
// one D. The per-thread walk, the merge and the store are kernels/fused/decode_thread_ops.hpp,
// which the CPU tests run too; this file adds only the warp shuffles and the shared memory.
#pragma once

#include "kernels/common/cuda_check.hpp"
#include "kernels/fused/decode.hpp"
#include "kernels/fused/decode_plan.hpp"
#include "kernels/fused/decode_thread_ops.hpp"

#include <cuda_runtime.h>

namespace attnpool::kernels {

/// decode_warp_tree with shuffles: at each offset both lanes of a pair compute the lower lane's
/// merge (its state the left operand), so they hold the same state bitwise and lane 0 ends with
/// the array form's result.
template <int DV, int R>
__device__ void decode_warp_reduce(decode_state<DV, R>& st) {
  constexpr unsigned kFull = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    decode_state<DV, R> other;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      other.softmax[r].max = __shfl_xor_sync(kFull, st.softmax[r].max, offset);
      other.softmax[r].sum = __shfl_xor_sync(kFull, st.softmax[r].sum, offset);
#pragma unroll
      for (int c = 0; c < DV; ++c) other.acc[r][c] = __shfl_xor_sync(kFull, st.acc[r][c], offset);
    }
    if ((lane & offset) == 0) {
      decode_merge(st, other);
    } else {
      decode_merge(other, st);
      st = other;
    }
  }
}

/// One block: rows blockIdx.x * R .., value window blockIdx.y, keys of split blockIdx.z.
template <int D, int DV, int R>
__global__ void __launch_bounds__(decode_traits<D, DV>::kThreads)
    fused_decode_kernel(const fused_args a) {
  using traits = decode_traits<D, DV>;
  using state = decode_state<DV, R>;
  // Raw storage: a __shared__ variable cannot have a constructor (online_softmax's member
  // initialisers); every slot is assigned before it is read.
  __shared__ alignas(state) unsigned char warp_storage[sizeof(state) * traits::kWarps];
  state* warp_states = reinterpret_cast<state*>(warp_storage);

  const std::size_t row0 = static_cast<std::size_t>(blockIdx.x) * R;
  const int col0 = static_cast<int>(blockIdx.y) * DV;
  const int cols = min(DV, a.dv - col0);
  const std::size_t begin = static_cast<std::size_t>(blockIdx.z) * a.keys_per_split;
  const std::size_t end = min(a.m, begin + a.keys_per_split);

  float q[R][D];
  decode_load_queries<D, R>(a, row0, q);
  state st;
  decode_walk<D, DV, R, traits::kUnroll>(a, q, begin, end, threadIdx.x, traits::kThreads, col0,
                                         cols, st);
  decode_warp_reduce(st);
  if (threadIdx.x % 32 == 0) warp_states[threadIdx.x / 32] = st;
  __syncthreads();
  if (threadIdx.x != 0) return;
  decode_store(a, decode_merge_warps(warp_states, traits::kWarps), row0, blockIdx.z, blockIdx.y,
               col0, cols);
}

template <int D, int DV, int R>
void launch_decode_config(const fused_args& args, const fused_plan& plan, stream_t stream) {
  const dim3 grid(plan.grid_x, plan.grid_y, static_cast<unsigned>(plan.splits));
  fused_decode_kernel<D, DV, R><<<grid, decode_traits<D, DV>::kThreads, 0, stream>>>(args);
  ATTNPOOL_CHECK_LAUNCH("fused_decode_kernel");
}

#define ATTNPOOL_DECODE_INSTANTIATE_DV(D, DV)                                                   \
  template void launch_decode_config<D, DV, 1>(const fused_args&, const fused_plan&, stream_t); \
  template void launch_decode_config<D, DV, decode_traits<D, DV>::kRows>(                       \
      const fused_args&, const fused_plan&, stream_t);
#define ATTNPOOL_DECODE_INSTANTIATE(D) \
  ATTNPOOL_DECODE_INSTANTIATE_DV(D, 1) \
  ATTNPOOL_DECODE_INSTANTIATE_DV(D, 2) \
  ATTNPOOL_DECODE_INSTANTIATE_DV(D, 4) \
  ATTNPOOL_DECODE_INSTANTIATE_DV(D, 8)

}  // namespace attnpool::kernels
