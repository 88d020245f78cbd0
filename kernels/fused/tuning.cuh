// What the tuning benchmark (bench/cuda/bench_fused_tuning.cu) needs from the fused family: the
// Gaussian fused kernel compiled with a traits struct of the caller's choosing, so that tile
// constants can be measured without editing kernels/fused/traits.hpp. Device code (nvcc only);
// nothing else outside kernels/fused/ reaches into the agent.
#pragma once

#include "kernels/fused/agent.cuh"

#include <cuda_runtime.h>

#include <cstddef>
#include <type_traits>

namespace attnpool::kernels {

/// Traits::kExpanded where a traits struct has it (the expanded d = 1 variants), else false.
template <class Traits, class = void>
struct tuned_expanded : std::false_type {};
template <class Traits>
struct tuned_expanded<Traits, std::void_t<decltype(Traits::kExpanded)>>
    : std::bool_constant<Traits::kExpanded> {};

/// The Gaussian fused kernel for (D, DV) with the tile constants of Traits (fused_traits<D, DV>
/// with some constants overridden; with kExpanded = true the expanded d = 1 score, as
/// fused_pool_expanded_kernel). One problem, no split-K, no batch blocks.
template <int D, int DV, class Traits>
__global__ void __launch_bounds__(Traits::kThreads) fused_pool_tuned_kernel(const fused_args args) {
  using agent_t =
      fused_agent<D, DV, detail::gaussian_log2_score, Traits, tuned_expanded<Traits>::value>;
  __shared__ typename agent_t::storage_t smem;
  agent_t agent(smem, args);
  agent.run();
}

/// The grid of fused_pool_tuned_kernel over n query rows (one value window, no split-K).
template <class Traits>
dim3 fused_tuned_grid(std::size_t n) {
  return dim3(static_cast<unsigned>((n + Traits::kRowsPerBlock - 1) / Traits::kRowsPerBlock), 1, 1);
}

/// Enqueues fused_pool_tuned_kernel<D, DV, Traits> on `stream`; the caller checks the launch.
template <int D, int DV, class Traits>
void launch_fused_tuned(const fused_args& args, cudaStream_t stream = nullptr) {
  fused_pool_tuned_kernel<D, DV, Traits>
      <<<fused_tuned_grid<Traits>(args.n), Traits::kThreads, 0, stream>>>(args);
}

}  // namespace attnpool::kernels
