// Host-side pieces of the fused path shared by src/cuda/*.cpp (defined in cuda_api.cpp): the
// kernel arguments of one problem, host <-> device copies, the stream of the host-memory entry
// points and the non-finite scan behind empty_support::error. Host-only (CUDA runtime headers).
#pragma once

#include <attnpool/types.hpp>

#include "cuda/cuda_check.hpp"
#include "fused_pool.hpp"

#include <cuda_runtime_api.h>

#include <cstddef>

namespace attnpool::cuda::detail {

/// The fused kernel's arguments for one validated problem (pointers, strides, sizes, the score
/// constant), and in `any` the any-kernel path's extras (read only if uses_any_kernel(params)).
kernels::fused_args fused_args_for(const_view q, const_view k, const_view v, mutable_view out,
                                   const pool_params& params, kernels::any_kernel_args& any);

/// Throws invalid_argument unless d and dv fit the kernels' int fields.
void check_int_dims(const char* fn, std::size_t d, std::size_t dv);

/// Host rows -> dense device rows (ld = cols), enqueued on `stream`; pads are never read.
device_buffer<float> upload(const_view a, const char* what, stream_t stream);
/// Dense device rows (ld = a.cols) -> host rows with a.ld, enqueued on `stream`.
void download(const float* d, mutable_view a, stream_t stream);

/// The stream of the host-memory entry points: the calling thread's default stream, so that
/// callers on different threads do not serialise on the legacy stream.
inline const stream_t kHostStream = cudaStreamPerThread;

/// The row-major index of the first non-finite element of `result` (device memory), or ~0ULL
/// when all are finite. Uses the scan slot, synchronises `stream`.
unsigned long long first_nonfinite_on_device(const_view result, void* scan_slot, stream_t stream);

}  // namespace attnpool::cuda::detail
