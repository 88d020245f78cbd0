// The backends behind the public entry points. Arguments arrive validated (validate.hpp).
#pragma once

#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace attnpool::detail {

void reference_pool(const_view q, const_view k, const_view v, mutable_view out,
                    const pool_params& params);
void reference_weights(const_view q, const_view k, mutable_view w, const pool_params& params);

void cpu_pool(const_view q, const_view k, const_view v, mutable_view out,
              const pool_params& params, unsigned threads);
// cpu_pool that also writes lse2[i] = log2 sum_j 2^(s_j), the row's log-sum-exp in log2 units
// (lse2 may be null). The backward pass's forward.
void cpu_pool_lse(const_view q, const_view k, const_view v, mutable_view out,
                  const pool_params& params, unsigned threads, float* lse2);
// B problems in one call (pool_batched): problem b is query rows [query_offsets[b],
// query_offsets[b + 1]) against key rows [key_offsets[b], key_offsets[b + 1]). mask::none only.
void cpu_pool_batched(const_view q, const_view k, const_view v, mutable_view out,
                      std::span<const std::size_t> query_offsets,
                      std::span<const std::size_t> key_offsets, const pool_params& params,
                      unsigned threads);
// The unnormalised streaming state of every row over the keys given (pool_partial): max[i] and
// sum[i] of the row's online softmax, acc row i its dv accumulators. mask::none only; a compact
// kernel's row with no key in the support gets the empty state (max -inf, sum 0, acc 0).
void cpu_pool_partial(const_view q, const_view k, const_view v, float* max, float* sum,
                      mutable_view acc, const pool_params& params, unsigned threads);
void cpu_weights(const_view q, const_view k, mutable_view w, const pool_params& params,
                 unsigned threads);

// Host-memory entry points of the CUDA backends: copy in, run, copy back, synchronise.
// Defined in src/cuda/ when built with CUDA, else in src/cuda_stub.cpp (they throw cuda_error).
void cuda_pool_host(const_view q, const_view k, const_view v, mutable_view out,
                    const pool_params& params, backend which);
void cuda_weights_host(const_view q, const_view k, mutable_view w, const pool_params& params);
void cuda_average_host(const_view values, mutable_view out);
// pool_backward on cuda_fused with host memory (src/cuda/backward.cpp): copy in, the fused
// backward kernels, copy back the gradients asked for, synchronise.
void cuda_backward_host(const_view q, const_view k, const_view v, const_view dout,
                        const pool_gradients& grads, const pool_params& params);
// pool_batched / pool_partial on cuda_fused (arguments validated by src/batched.cpp; n >= 1).
void cuda_pool_batched_host(const_view q, const_view k, const_view v, mutable_view out,
                            std::span<const std::size_t> query_offsets,
                            std::span<const std::size_t> key_offsets, const pool_params& params);
void cuda_pool_partial_host(const_view q, const_view k, const_view v, float* max, float* sum,
                            mutable_view acc, const pool_params& params);

// The leave-one-out bandwidth sweep on the GPU (loo_cv_error / select_bandwidth on cuda_fused):
// constructing it copies x and y to the device once; each call evaluates cv(h) for a set of
// bandwidths there (arguments validated by the caller, n >= 2) and synchronises. Defined in
// src/cuda/bandwidth_cuda.cpp, or in src/cuda_stub.cpp, where the constructor throws cuda_error.
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
