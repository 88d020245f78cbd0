// The base of every kernel family's parameters (FlashAttention's Qkv_params): the problem's
// views and sizes. Each family's args struct derives from it and adds its score, mask and
// extras (kernels/fused/params.hpp, kernels/backward/params.hpp, kernels/loo_sweep/params.hpp);
// problem_args_of fills it from the public views, once for every family. Plain data, passed
// by value as a kernel parameter; host-includable.
#pragma once

#include <attnpool/types.hpp>

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

/// The problem of views q (n x d), k (m x d) and v (m x dv), validated by the caller.
inline problem_args problem_args_of(const_view q, const_view k, const_view v) {
  problem_args p;
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.ldq = q.ld;
  p.ldk = k.ld;
  p.ldv = v.ld;
  p.n = q.rows;
  p.m = k.rows;
  p.d = static_cast<int>(q.cols);
  p.dv = static_cast<int>(v.cols);
  return p;
}

}  // namespace attnpool::kernels
