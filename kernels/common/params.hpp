// The base of every kernel family's parameters (FlashAttention's Qkv_params): the problem's
// views and sizes. Each family's args struct derives from it and adds its score, mask and
// extras (kernels/fused/params.hpp, kernels/backward/params.hpp, kernels/loo_sweep/params.hpp);
// src/cuda/host.hpp fills it from the public views once (problem_args_for). Plain data, passed
// by value as a kernel parameter; host-includable.
#pragma once

#include <cstddef>

namespace attnpool::kernels {

/// Queries, keys and values of one problem: pointers, leading dimensions (in elements) and sizes.
/// Small and array-free on purpose: it opens the fused fast path's parameter block, whose code
/// depends on how nvcc addresses that block (kernels/fused/params.hpp).
struct problem_args {
  const float* q = nullptr;  ///< n x d, row stride ldq
  const float* k = nullptr;  ///< m x d, row stride ldk
  const float* v = nullptr;  ///< m x dv, row stride ldv
  std::size_t ldq = 0, ldk = 0, ldv = 0;
  std::size_t n = 0, m = 0;
  int d = 0, dv = 0;
};

}  // namespace attnpool::kernels
