#include "src/cuda/cublas_check.hpp"

#include <attnpool/error.hpp>

namespace attnpool::cuda::detail {

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw cuda_error(::attnpool::detail::concat(file, ":", line, ": ", call,
                                              " failed: ", cublasGetStatusName(status), " (",
                                              cublasGetStatusString(status), ")"));
}

}  // namespace attnpool::cuda::detail
