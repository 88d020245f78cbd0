/// \file
/// Lets the shared maths compile with and without nvcc (the tiny-cuda-nn idiom): the
/// host/device function qualifier, the one "unroll on the device" spelling, and the few
/// intrinsics whose host stand-ins keep host and device arithmetic the same.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define ATTNPOOL_HD __host__ __device__ __forceinline__
#define ATTNPOOL_DEVICE_COMPILE 1
#else
#define ATTNPOOL_HD inline
#define ATTNPOOL_DEVICE_COMPILE 0
#endif

/// Put before a loop: fully unrolled on the device, where constant indices keep per-thread
/// arrays in registers; nothing on the host, where `#pragma unroll` is not a GCC pragma (and
/// host compilers warn on it).
#if defined(__CUDA_ARCH__)
#define ATTNPOOL_UNROLL _Pragma("unroll")
#else
#define ATTNPOOL_UNROLL
#endif

namespace attnpool::detail {

/// A read-only load: through the non-coherent cache on the device.
ATTNPOOL_HD float ldg(const float* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

/// a - b rounded on its own: never contracted with the multiply that produced a.
ATTNPOOL_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  volatile float r = a - b;  // a separate, rounded operation on the host too
  return r;
#endif
}

/// a * b + c with a single rounding on host and device alike.
ATTNPOOL_HD float fma_hd(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

ATTNPOOL_HD float max_hd(float a, float b) {
  return a > b ? a : b;
}

}  // namespace attnpool::detail
