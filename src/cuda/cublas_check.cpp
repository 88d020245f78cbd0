#include "src/cuda/cublas_check.hpp"

#include "src/cuda/cublas_library.hpp"

#include <attnpool/error.hpp>

namespace attnpool::cuda::detail {

// A status comes from a cuBLAS call, so the library is loaded by the time one is reported.
void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const cublas_library& api = cublas();
  throw cuda_error(::attnpool::detail::concat(file, ":", line, ": ", call,
                                              " failed: ", api.get_status_name(status), " (",
                                              api.get_status_string(status), ")"));
}

}  // namespace attnpool::cuda::detail
