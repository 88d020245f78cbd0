// The leave-one-out bandwidth sweep and its fixed-order reduction; see
// kernels/loo_sweep/params.hpp.
//
// The per-row arithmetic (running nearest distance, rescale, masked weights, error) is
// loo_row_sweep in kernels/loo_sweep/params.hpp, shared with the host tests; this file stages the
// keys through shared memory, computes each pair's distance once, and launches.
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/loo_sweep/params.hpp"

#include <cuda_runtime.h>
#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <limits>

namespace attnpool::kernels {
namespace {

// The reduction is memory-bound and tiny (nb x n doubles read once): not measured on a GPU
// yet; 256 threads is the usual streaming choice and keeps CUB's temp storage small.
constexpr int kReduceThreads = 256;

template <int D, int DVC>
__device__ __forceinline__ void loo_sweep_agent(const loo_sweep_args& a) {
  using traits = loo_sweep_traits<D, DVC>;
  constexpr int kG = traits::kGroup;
  constexpr int kChunk = traits::kChunk;
  constexpr int kTile = traits::kTileKeys;
  __shared__ float skeys[traits::kKeyFloats > 0 ? traits::kKeyFloats : 1];
  __shared__ float svals[traits::kValueFloats];

  // The training inputs are the queries and the keys at once (loo_sweep_args: q = k, n = m).
  const float* const x = a.q;
  const std::size_t ldx = a.ldq;
  const std::size_t n = a.n;
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * traits::kThreads + threadIdx.x;
  const bool row_ok = i < n;
  const int g0 = static_cast<int>(blockIdx.y) * kG;
  const int active = min(kG, a.nb - g0);  // >= 1: grid.y = ceil(nb / kG)

  // The group's constants; unused lanes repeat the last one (their results are not written).
  float neg_c[kG];
#pragma unroll
  for (int g = 0; g < kG; ++g) neg_c[g] = a.score_constants[g0 + min(g, active - 1)];

  // The query row, zero-padded to D (the generic path reads it from global memory instead).
  [[maybe_unused]] float q[D > 0 ? D : 1];
#pragma unroll
  for (int c = 0; c < (D > 0 ? D : 1); ++c)
    q[c] = (D > 0 && row_ok && c < a.d) ? x[i * ldx + c] : 0.0f;
  [[maybe_unused]] const float* xi = x + (row_ok ? i : 0) * ldx;

  double err[kG];
#pragma unroll
  for (int g = 0; g < kG; ++g) err[g] = 0.0;

  // Value-column windows one after the other: the row's error stays in this thread.
  for (int c0 = 0; c0 < a.dv; c0 += DVC) {
    const int cols = min(DVC, a.dv - c0);
    loo_row_sweep<kG, DVC> row;

    for (std::size_t j0 = 0; j0 < n; j0 += kTile) {
      const int len = static_cast<int>(min(static_cast<std::size_t>(kTile), n - j0));
      __syncthreads();  // every thread is done with the previous tile
      {
        // Stage key j0 + t; slots past the end are zero (read, then masked out below).
        const int t = static_cast<int>(threadIdx.x);
        const std::size_t j = j0 + static_cast<std::size_t>(t);
        if constexpr (D > 0) {
#pragma unroll
          for (int c = 0; c < D; ++c)
            skeys[t * D + c] = (t < len && c < a.d) ? x[j * ldx + c] : 0.0f;
        }
#pragma unroll
        for (int c = 0; c < DVC; ++c)
          svals[t * DVC + c] = (t < len && c < cols) ? a.v[j * a.ldv + c0 + c] : 0.0f;
      }
      __syncthreads();
      if (!row_ok) continue;  // barriers stay uniform: they are outside this branch

      for (int k0 = 0; k0 < len; k0 += kChunk) {
        // The chunk's distances, computed once per pair and shared by every bandwidth.
        float r[kChunk];
        unsigned valid = 0;
#pragma unroll
        for (int k = 0; k < kChunk; ++k) {
          const int kk = k0 + k;  // < kTile: chunks never straddle a tile
          const std::size_t j = j0 + static_cast<std::size_t>(kk);
          float dist = 0.0f;
          if constexpr (D > 0) {
            dist = detail::squared_distance<D>(q, &skeys[kk * D]);
          } else {
            if (kk < len) dist = detail::squared_distance(xi, x + j * ldx, a.d);
          }
          r[k] = dist;
          if (kk < len && j != i) valid |= 1u << k;  // j == i: leave one out
        }
        row.add_chunk(r, valid, neg_c, active, &svals[k0 * DVC]);
      }
    }
    if (row_ok) row.add_errors(a.v + i * a.ldv + c0, cols, active, err);  // targets = values
  }

  if (!row_ok) return;
#pragma unroll
  for (int g = 0; g < kG; ++g)
    if (g < active) a.row_error[static_cast<std::size_t>(g0 + g) * n + i] = err[g];
}

template <int D, int DVC>
__global__ void __launch_bounds__(loo_sweep_traits<D, DVC>::kThreads)
    loo_sweep_kernel(const loo_sweep_args a) {
  loo_sweep_agent<D, DVC>(a);
}

__global__ void __launch_bounds__(kReduceThreads)
    loo_reduce_kernel(const double* __restrict__ row_error, std::size_t n, double count,
                      double* __restrict__ cv) {
  using reduce = cub::BlockReduce<double, kReduceThreads>;
  __shared__ typename reduce::TempStorage tmp;
  const double* rows = row_error + static_cast<std::size_t>(blockIdx.x) * n;
  double s = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += kReduceThreads) s += rows[i];
  s = reduce(tmp).Sum(s);
  if (threadIdx.x == 0) cv[blockIdx.x] = s / count;
}

template <int D, int DVC>
void launch_sweep(const loo_sweep_args& a, stream_t stream) {
  using traits = loo_sweep_traits<D, DVC>;
  const dim3 grid(static_cast<unsigned>((a.n + traits::kThreads - 1) / traits::kThreads),
                  static_cast<unsigned>((a.nb + traits::kGroup - 1) / traits::kGroup));
  loo_sweep_kernel<D, DVC><<<grid, traits::kThreads, 0, stream>>>(a);
  ATTNPOOL_CHECK_LAUNCH("loo_sweep_kernel");
}

}  // namespace

void launch_loo_sweep(const loo_sweep_args& a, stream_t stream) {
  if (a.n == 0 || a.nb <= 0 || a.dv <= 0) return;
  loo_d_buckets::dispatch(static_cast<std::size_t>(a.d), [&](auto dc) {
    loo_dv_buckets::dispatch(static_cast<std::size_t>(a.dv), [&](auto dvc) {
      launch_sweep<decltype(dc)::value, decltype(dvc)::value>(a, stream);
    });
  });
}

void launch_loo_reduce(const double* row_error, std::size_t n, int nb, double count, double* cv,
                       stream_t stream) {
  if (nb <= 0) return;
  loo_reduce_kernel<<<static_cast<unsigned>(nb), kReduceThreads, 0, stream>>>(row_error, n, count,
                                                                              cv);
  ATTNPOOL_CHECK_LAUNCH("loo_reduce_kernel");
}

}  // namespace attnpool::kernels
