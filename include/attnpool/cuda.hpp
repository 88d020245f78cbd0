/// \file
/// The device-pointer API. Every pointer here is CUDA device memory. Calls enqueue work on
/// opts.stream and return without synchronising; they allocate nothing: scratch memory comes
/// from opts.workspace, sized by the matching *_workspace_size query. In a build without CUDA
/// every function throws cuda_error ("attnpool was built without CUDA").
///
/// Validation that needs the data itself (opts.check_finite) runs on the device and reports
/// through a flag in the workspace, which costs one synchronisation of opts.stream; switch it
/// off for a fully asynchronous call.
///
/// pool() takes masks on cuda_fused, and pool_backward() is the fused backward pass (issue 6);
/// the unfused path and attention_weights() refuse masks ("not implemented on the GPU yet").
///
/// The workspace must start on a 256-byte boundary (cudaMalloc's pointers do). The workspace
/// queries read the current device's multiprocessor count (split-K sizing depends on it), so
/// they throw cuda_error where no device is usable. The unfused path keeps one cuBLAS handle per
/// host thread and device, created (and allocating its own memory) on first use.
#pragma once

#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

namespace attnpool::cuda {

/// Bytes of device workspace that pool() needs for this problem and backend (may be 0).
std::size_t pool_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                const pool_params& params, backend which);

/// Attention pooling on device pointers (see attnpool::pool for the maths and the throws).
/// Backend must be cuda_fused, cuda_unfused or automatic (= cuda_fused). Masks
/// (params.mask) on cuda_fused only; params.valid_lens stays HOST memory: it is copied into the
/// workspace on opts.stream before this call returns (the span may be released then).
void pool(const_view queries, const_view keys, const_view values, mutable_view out,
          const pool_params& params, const options& opts);

/// Bytes of device workspace that pool_backward() needs: a few floats per query row, plus a
/// copy of params.valid_lens with mask::valid_length. Throws as pool_workspace_size().
std::size_t pool_backward_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                         std::size_t dv, const pool_params& params);

/// The backward pass of pool() on device pointers (see attnpool::pool_backward for the maths),
/// fused in the FlashAttention style: one kernel writes each row's log-sum-exp and
/// D_i = dout_i . out_i, one row-parallel kernel dq and per-row shares of dh, one key-parallel
/// kernel dk and dv, scores recomputed; the n x m matrix is never stored and every gradient is
/// summed in a fixed order (bitwise repeatable). Gaussian kernel, isotropic bandwidth, d <= 64.
/// Backend must be cuda_fused or automatic.
/// \param grads device views of the gradients wanted (any subset); grads.bandwidth, when set,
///        points to ONE DOUBLE IN DEVICE MEMORY, written asynchronously.
/// \param params masks as for pool(); params.valid_lens stays HOST memory: it is copied into the
///        workspace on opts.stream before this call returns (the span may be released then).
/// Asynchronous on opts.stream unless opts.check_finite (the device scan of q, k, v and dout
/// synchronises once).
/// \throws invalid_argument as attnpool::pool_backward does, for d > 64, a non-Gaussian kernel
///         or an anisotropic bandwidth, or a workspace too small; cuda_error on CUDA failures.
void pool_backward(const_view queries, const_view keys, const_view values, const_view dout,
                   const pool_gradients& grads, const pool_params& params, const options& opts);

/// Bytes of device workspace that attention_weights() needs (may be 0).
std::size_t attention_weights_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                             const pool_params& params);

/// The n x m weight matrix on device pointers, through the unfused (cuBLAS) path.
void attention_weights(const_view queries, const_view keys, mutable_view weights,
                       const pool_params& params, const options& opts);

/// Mean of the value rows broadcast to out's rows, on device pointers (Thrust reduction).
void average_pool(const_view values, mutable_view out, const options& opts);

/// Number of usable CUDA devices (0 without CUDA or without a device). Never throws.
int device_count() noexcept;

}  // namespace attnpool::cuda
