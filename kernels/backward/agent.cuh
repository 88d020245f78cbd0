// The thread walk of the backward kernels: which query row, or which key and value window, a
// thread of the grid works on; the work itself is kernels/backward/thread_ops.hpp (host and
// device code, tested on the host). Device code, included only by kernels/backward/kernel.cuh.
#pragma once

#include "kernels/backward/params.hpp"
#include "kernels/backward/thread_ops.hpp"

#include <cstddef>

namespace attnpool::kernels {

/// Row phase: one thread per query row. No block-wide barrier, so threads past n return.
template <int D, bool kDv1>
__device__ __forceinline__ void backward_rows_agent(const backward_args& a) {
  const std::size_t i =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (i >= a.n) return;
  backward_row<D, kDv1>(a, i);
}

/// Key phase: one thread per key; grid.y: windows of backward_value_window value columns
/// (window 0 also writes dk).
template <int D, bool kDv1>
__device__ __forceinline__ void backward_keys_agent(const backward_args& a) {
  constexpr int kW = backward_value_window<D, kDv1>;
  const std::size_t j =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (j >= a.m) return;
  const int col0 = static_cast<int>(blockIdx.y) * kW;
  backward_key<D, kDv1, kW>(a, j, col0, min(kW, a.dv - col0), blockIdx.y == 0);
}

/// Tiled row phase: block (x, y) holds kThreads rows and walks key range y of sp in tiles staged
/// in shared memory; one range finishes its rows, several store their sums for the merge.
template <int D, bool kDv1>
__device__ __forceinline__ void backward_rows_tiled_agent(const backward_args& a,
                                                          const backward_split sp,
                                                          float* partials) {
  using tiled = backward_tiled_traits<D>;
  constexpr int kT = tiled::kTile;
  __shared__ alignas(16) float ks[kT * D];
  __shared__ alignas(16) float vs[kDv1 ? kT : 1];
  const std::size_t i =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  const bool active = i < a.n;
  const query_row<D> r(a, active ? i : a.n - 1);  // threads past n load a real row, unused
  const std::size_t j_begin = static_cast<std::size_t>(blockIdx.y) * sp.per_split;
  const std::size_t j_end = min(j_begin + sp.per_split, a.m);
  row_sums<D> st;
  for (std::size_t t0 = j_begin; t0 < j_end; t0 += kT) {
    const int len = static_cast<int>(min(static_cast<std::size_t>(kT), j_end - t0));
    __syncthreads();  // the previous tile is no longer read
    load_key_tile<D, kDv1>(a, t0, len, ks, vs, static_cast<int>(threadIdx.x),
                           backward_traits<D>::kThreads);
    __syncthreads();
    if (active)
      accumulate_row<D, kDv1>(a, i, r.q, r.dout, r.dout0, t0, t0 + static_cast<std::size_t>(len),
                              tile_key_source<D>{a, ks, vs, t0}, st);
  }
  if (!active) return;
  if (sp.splits == 1) {
    finish_row<D>(a, i, st);
  } else {
    store_row_sums<D>(
        partials + (static_cast<std::size_t>(blockIdx.y) * a.n + i) * tiled::kRowPartial, st);
  }
}

/// The rows phase's merge: one thread per row, its ranges in order.
template <int D>
__device__ __forceinline__ void backward_rows_merge_agent(const backward_args& a,
                                                          std::size_t splits,
                                                          const float* partials) {
  const std::size_t i =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (i >= a.n) return;
  finish_row_splits<D>(a, i, splits, partials);
}

/// Tiled key phase: block (x, y, z) holds kThreads keys and value window y, and walks query
/// range z of sp in tiles staged in shared memory (window 0 also writes dk).
template <int D, bool kDv1>
__device__ __forceinline__ void backward_keys_tiled_agent(const backward_args& a,
                                                          const backward_split sp,
                                                          float* partials) {
  using tiled = backward_tiled_traits<D>;
  constexpr int kT = tiled::kTile;
  constexpr int kW = backward_value_window<D, kDv1>;
  __shared__ alignas(16) float qs[kT * D];
  __shared__ float l2[kT], ds[kT], d0[kT];
  const std::size_t j =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  const bool active = j < a.m;
  const std::size_t jj = active ? j : a.m - 1;  // threads past m load a real key, unused
  float kj[D];
  backward_detail::load_row<D>(a.k + jj * a.ldk, a.d, kj);
  const float* vj = a.v + jj * a.ldv;
  const float v0 = backward_detail::ldg(vj);
  const int col0 = static_cast<int>(blockIdx.y) * kW;
  const int cols = min(kW, a.dv - col0);
  const std::size_t i_begin = static_cast<std::size_t>(blockIdx.z) * sp.per_split;
  const std::size_t i_end = min(i_begin + sp.per_split, a.n);
  key_sums<D, kW> st;
  for (std::size_t t0 = i_begin; t0 < i_end; t0 += kT) {
    const int len = static_cast<int>(min(static_cast<std::size_t>(kT), i_end - t0));
    __syncthreads();
    load_query_tile<D>(a, t0, len, qs, l2, ds, d0, static_cast<int>(threadIdx.x),
                       backward_traits<D>::kThreads);
    __syncthreads();
    if (active)
      accumulate_key<D, kDv1, kW>(a, j, kj, vj, v0, col0, cols, t0,
                                  t0 + static_cast<std::size_t>(len),
                                  tile_query_source<D>{qs, l2, ds, d0, t0}, st);
  }
  if (!active) return;
  if (sp.splits == 1) {
    finish_key<D, kW>(a, j, col0, cols, blockIdx.y == 0, st);
  } else {
    store_key_sums<D, kW>(
        partials + (static_cast<std::size_t>(blockIdx.z) * a.m + j) * key_partial_floats<D>(a.dv),
        col0, cols, blockIdx.y == 0, st);
  }
}

/// The keys phase's merge: one thread per key, its ranges in order, every value column.
template <int D>
__device__ __forceinline__ void backward_keys_merge_agent(const backward_args& a,
                                                          std::size_t splits,
                                                          const float* partials) {
  const std::size_t j =
      static_cast<std::size_t>(blockIdx.x) * backward_traits<D>::kThreads + threadIdx.x;
  if (j >= a.m) return;
  finish_key_splits<D>(a, j, splits, partials);
}

}  // namespace attnpool::kernels
