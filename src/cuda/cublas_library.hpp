// cuBLAS, loaded on first use. The library is 100+ MiB of mappings that a CPU run (or the
// `--version` of a tool built with CUDA) should not pay for, and that a small address-space
// limit cannot hold at all; so nothing links it, and the unfused path calls it through this
// table, filled by dlopen the first time a GPU call needs it. Host-only header.
#pragma once

#include <cublas_v2.h>

#include <span>

namespace attnpool::cuda::detail {

/// The cuBLAS entry points the unfused path calls (the _v2 names cublas_v2.h maps them to).
struct cublas_library {
  decltype(&::cublasCreate_v2) create = nullptr;
  decltype(&::cublasDestroy_v2) destroy = nullptr;
  decltype(&::cublasSetMathMode) set_math_mode = nullptr;
  decltype(&::cublasSetPointerMode_v2) set_pointer_mode = nullptr;
  decltype(&::cublasSetStream_v2) set_stream = nullptr;
  decltype(&::cublasSetWorkspace_v2) set_workspace = nullptr;
  decltype(&::cublasSgemm_v2_64) sgemm_64 = nullptr;
  decltype(&::cublasGetStatusName) get_status_name = nullptr;
  decltype(&::cublasGetStatusString) get_status_string = nullptr;
};

/// Opens the first of `names` that dlopen can open (a soname is searched as the dynamic loader
/// searches, LD_LIBRARY_PATH included) and resolves every entry point. The library stays
/// loaded for the life of the process. Throws cuda_error naming each library tried and why it
/// failed, or the entry point it lacks.
[[nodiscard]] cublas_library load_cublas(std::span<const char* const> names);

/// cuBLAS of this build's major version (libcublas.so.<major>, then the CUDA Toolkit's copy
/// found at build time, then libcublas.so), loaded on the first call; thread-safe. A failed
/// load throws cuda_error and is tried again on the next call.
[[nodiscard]] const cublas_library& cublas();

}  // namespace attnpool::cuda::detail
