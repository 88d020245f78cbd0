// Status checks and RAII device memory for the CUDA runtime, below both kernels/ and src/cuda/.
// Host-only header (the CUDA runtime API, not cuBLAS: src/cuda/cublas_check.hpp has that half).
// Every CUDA runtime call goes through one of these macros, so a failure always becomes an
// attnpool::cuda_error carrying file:line, the call's text and the status name.
#pragma once

#include <attnpool/error.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

namespace attnpool::cuda::detail {

/// Throws cuda_error "file:line: call failed: cudaErrorX (description)".
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file,
                                   int line);

}  // namespace attnpool::cuda::detail

/// Checks a CUDA runtime call; throws attnpool::cuda_error on failure.
#define ATTNPOOL_CUDA_TRY(call)                                                          \
  do {                                                                                   \
    const cudaError_t attnpool_cuda_status_ = (call);                                    \
    if (attnpool_cuda_status_ != cudaSuccess)                                            \
      ::attnpool::cuda::detail::throw_cuda_error(attnpool_cuda_status_, #call, __FILE__, \
                                                 __LINE__);                              \
  } while (0)

/// Put right after every kernel launch: a bad configuration (too many threads, too much shared
/// memory, no kernel image for this GPU) is reported here, at the launch that caused it, and
/// not at some later unrelated call. cudaGetLastError also clears non-sticky errors.
#define ATTNPOOL_CHECK_LAUNCH(kernel_name)                                                      \
  do {                                                                                          \
    const cudaError_t attnpool_launch_status_ = cudaGetLastError();                             \
    if (attnpool_launch_status_ != cudaSuccess)                                                 \
      ::attnpool::cuda::detail::throw_cuda_error(attnpool_launch_status_,                       \
                                                 "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)

namespace attnpool::cuda::detail {

/// Allocates `bytes` of device memory; on failure throws cuda_error naming the byte count and
/// `what` (never aborts). The failed cudaMalloc's error is cleared first so that the next
/// launch check does not report it a second time.
void* device_malloc(std::size_t bytes, const char* what);

/// Owning device array of T. Move-only; the destructor frees and never throws (a cudaFree
/// error at that point, e.g. during process teardown, is deliberately ignored: there is no
/// caller left to report it to).
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  /// `count` elements; `what` names the buffer in the out-of-memory message.
  device_buffer(std::size_t count, const char* what)
      : ptr_(static_cast<T*>(device_malloc(checked_bytes(count, what), what))), count_(count) {}
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  ~device_buffer() { release(); }

  [[nodiscard]] T* data() const noexcept { return ptr_; }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] std::size_t bytes() const noexcept { return count_ * sizeof(T); }

 private:
  static std::size_t checked_bytes(std::size_t count, const char* what) {
    if (count > static_cast<std::size_t>(-1) / sizeof(T))
      throw cuda_error(::attnpool::detail::concat("device allocation for ", what, ": ", count,
                                                  " elements overflow size_t bytes"));
    return count * sizeof(T);
  }
  void release() noexcept {
    if (ptr_ != nullptr) static_cast<void>(cudaFree(ptr_));
    ptr_ = nullptr;
    count_ = 0;
  }

  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace attnpool::cuda::detail
