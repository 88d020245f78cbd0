// The thread walk of the backward kernels: which query row, or which key and value window, a
// thread of the grid works on; the work itself is kernels/backward/thread_ops.hpp (host and
// device code, tested on the host). Device code, included only by kernels/backward/kernel.cuh.
#pragma once

#include "kernels/backward/params.hpp"
#include "kernels/backward/thread_ops.hpp"

#include <cstddef>

namespace attnpool::kernels {

/// Row phase: one thread per query row. No block-wide barrier, so threads past n return.
template <int D, bool kDv1>
__device__ __forceinline__ void backward_rows_agent(const backward_args& a) {
  const std::size_t i =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (i >= a.n) return;
  backward_row<D, kDv1>(a, i);
}

/// Key phase: one thread per key; grid.y: windows of backward_value_window value columns
/// (window 0 also writes dk).
template <int D, bool kDv1>
__device__ __forceinline__ void backward_keys_agent(const backward_args& a) {
  constexpr int kW = backward_value_window<D, kDv1>;
  const std::size_t j =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (j >= a.m) return;
  const int col0 = static_cast<int>(blockIdx.y) * kW;
  backward_key<D, kDv1, kW>(a, j, col0, min(kW, a.dv - col0), blockIdx.y == 0);
}

}  // namespace attnpool::kernels
