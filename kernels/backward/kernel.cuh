// Device side of the fused backward pass: thin __global__ entry points over the agents of
// kernels/backward/agent.cuh (see kernels/backward/params.hpp for the phases and
// kernels/backward/thread_ops.hpp for the maths). Included only by kernels/backward/rows.cu,
// kernels/backward/keys.cu and kernels/backward/tiled.cu.
#pragma once

#include "kernels/backward/agent.cuh"
#include "kernels/backward/params.hpp"
#include "kernels/common/cuda_check.hpp"

#include <cuda_runtime.h>

#include <cstddef>

namespace attnpool::kernels {

/// Row phase: lse2, D_i, dq and the rows' shares of dh.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_rows_kernel(const backward_args a) {
  backward_rows_agent<D, kDv1>(a);
}

/// Key phase: dk (window 0) and the window's dv columns.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_keys_kernel(const backward_args a) {
  backward_keys_agent<D, kDv1>(a);
}

/// Tiled row phase over key ranges (grid.y) and its merge.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_rows_tiled_kernel(const backward_args a, const backward_split sp, float* partials) {
  backward_rows_tiled_agent<D, kDv1>(a, sp, partials);
}

template <int D>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_rows_merge_kernel(const backward_args a, std::size_t splits, const float* partials) {
  backward_rows_merge_agent<D>(a, splits, partials);
}

/// Tiled key phase over value windows (grid.y) and query ranges (grid.z), and its merge.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_keys_tiled_kernel(const backward_args a, const backward_split sp, float* partials) {
  backward_keys_tiled_agent<D, kDv1>(a, sp, partials);
}

template <int D>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_keys_merge_kernel(const backward_args a, std::size_t splits, const float* partials) {
  backward_keys_merge_agent<D>(a, splits, partials);
}

}  // namespace attnpool::kernels
