// Device side of the fused backward pass: thin __global__ entry points over the agents of
// kernels/backward/agent.cuh (see kernels/backward/params.hpp for the phases and
// kernels/backward/thread_ops.hpp for the maths). Included only by kernels/backward/rows.cu and
// kernels/backward/keys.cu.
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

/// Blocks of kThreads rows (or keys) covering `rows`; the host side checked the grid limit.
template <int D>
unsigned backward_blocks(std::size_t rows) {
  constexpr std::size_t t = backward_traits<D>::kThreads;
  return static_cast<unsigned>((rows + t - 1) / t);
}

}  // namespace attnpool::kernels
