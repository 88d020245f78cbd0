#include "kernels/common/cuda_check.hpp"

namespace attnpool::cuda::detail {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw cuda_error(::attnpool::detail::concat(file, ":", line, ": ", call,
                                              " failed: ", cudaGetErrorName(status), " (",
                                              cudaGetErrorString(status), ")"));
}

void* device_malloc(std::size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status != cudaSuccess) {
    // An allocation failure is not sticky, but it stays the "last error" and would otherwise be
    // reported again by the next launch check.
    static_cast<void>(cudaGetLastError());
    throw cuda_error(::attnpool::detail::concat("cudaMalloc of ", bytes, " bytes for ", what,
                                                " failed: ", cudaGetErrorName(status), " (",
                                                cudaGetErrorString(status), ")"));
  }
  return p;
}

}  // namespace attnpool::cuda::detail
