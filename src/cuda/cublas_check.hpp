// The cuBLAS half of the error model (kernels/common/cuda_check.hpp has the runtime half): every
// cuBLAS call of the unfused path goes through ATTNPOOL_CUBLAS_TRY. Host-only header.
#pragma once

#include <cublas_v2.h>

namespace attnpool::cuda::detail {

/// Throws cuda_error "file:line: call failed: CUBLAS_STATUS_X (description)".
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

}  // namespace attnpool::cuda::detail

/// Checks a cuBLAS call; throws attnpool::cuda_error on failure.
#define ATTNPOOL_CUBLAS_TRY(call)                                                            \
  do {                                                                                       \
    const cublasStatus_t attnpool_cublas_status_ = (call);                                   \
    if (attnpool_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                    \
      ::attnpool::cuda::detail::throw_cublas_error(attnpool_cublas_status_, #call, __FILE__, \
                                                   __LINE__);                                \
  } while (0)
