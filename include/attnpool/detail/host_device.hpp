/// \file
/// Lets the shared maths compile with and without nvcc (the tiny-cuda-nn idiom).
#pragma once

#if defined(__CUDACC__)
#define ATTNPOOL_HD __host__ __device__ __forceinline__
#define ATTNPOOL_DEVICE_COMPILE 1
#else
#define ATTNPOOL_HD inline
#define ATTNPOOL_DEVICE_COMPILE 0
#endif
