// Device side of the fused backward pass: thin __global__ entry points over the per-row and
// per-key agents of kernels/backward/agent.hpp (see there and kernels/backward/params.hpp for the
// phases and the maths). Included only by kernels/backward/rows.cu and backward_keys.cu.
#pragma once

#include "kernels/backward/params.hpp"
#include "kernels/backward/agent.hpp"
#include "kernels/common/cuda_check.hpp"

#include <cuda_runtime.h>

#include <cstddef>

namespace attnpool::kernels {

/// Row phase, one thread per query row: lse2, D_i, dq and the rows' shares of dh.
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_rows_kernel(const backward_args a) {
  const std::size_t i =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (i >= a.n) return;  // no block-wide barrier in this kernel
  backward_row<D, kDv1>(a, i);
}

/// Key phase, one thread per key; grid.y: windows of backward_value_window value columns
/// (window 0 also writes dk).
template <int D, bool kDv1>
__global__ void __launch_bounds__(backward_traits<D>::kThreads)
    backward_keys_kernel(const backward_args a) {
  constexpr int kW = backward_value_window<D, kDv1>;
  const std::size_t j =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (j >= a.m) return;
  const int col0 = static_cast<int>(blockIdx.y) * kW;
  backward_key<D, kDv1, kW>(a, j, col0, min(kW, a.dv - col0), blockIdx.y == 0);
}

/// Blocks of kThreads rows (or keys) covering `rows`; the host side checked the grid limit.
template <int D>
unsigned backward_blocks(std::size_t rows) {
  constexpr std::size_t t = backward_traits<D>::kThreads;
  return static_cast<unsigned>((rows + t - 1) / t);
}

}  // namespace attnpool::kernels
