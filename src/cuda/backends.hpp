// The CUDA backends behind the host-memory public entry points (backend::cuda_*). Defined in
// src/cuda/ when built with CUDA, else in src/cuda/stub.cpp (they throw cuda_error).
#pragma once

#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace attnpool::detail {

// Host-memory entry points of the CUDA backends: copy in, run, copy back, synchronise.
// Defined in src/cuda/ when built with CUDA, else in src/cuda/stub.cpp (they throw cuda_error).
void cuda_pool_host(const_view q, const_view k, const_view v, mutable_view out,
                    const pool_params& params, backend which);
void cuda_weights_host(const_view q, const_view k, mutable_view w, const pool_params& params);
void cuda_average_host(const_view values, mutable_view out);
// pool_backward on cuda_fused with host memory (src/cuda/backward.cpp): copy in, the fused
// backward kernels, copy back the gradients asked for, synchronise.
void cuda_backward_host(const_view q, const_view k, const_view v, const_view dout,
                        const pool_gradients& grads, const pool_params& params);
// pool_batched / pool_partial on cuda_fused (arguments validated by src/api/batched.cpp; n >= 1).
void cuda_pool_batched_host(const_view q, const_view k, const_view v, mutable_view out,
                            std::span<const std::size_t> query_offsets,
                            std::span<const std::size_t> key_offsets, const pool_params& params);
// `st`: one shard in host memory with state_step 1 (partial_states::view()).
void cuda_pool_partial_host(const_view q, const_view k, const_view v, const mutable_partials& st,
                            const pool_params& params);

// The leave-one-out bandwidth sweep on the GPU (loo_cv_error / select_bandwidth on cuda_fused):
// constructing it copies x and y to the device once; each call evaluates cv(h) for a set of
// bandwidths there (arguments validated by the caller, n >= 2) and synchronises. Defined in
// src/cuda/bandwidth.cpp, or in src/cuda/stub.cpp, where the constructor throws cuda_error.
// Without a device the constructor throws cuda_error too.
class cuda_loo_cv {
 public:
  cuda_loo_cv(const_view x, const_view y);
  cuda_loo_cv(const cuda_loo_cv&) = delete;
  cuda_loo_cv& operator=(const cuda_loo_cv&) = delete;
  ~cuda_loo_cv();
  std::vector<double> operator()(std::span<const double> bandwidths);

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace attnpool::detail
