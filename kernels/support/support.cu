// The small kernels around the fused one; see kernels/support/support.hpp.
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/scores.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/support/support.hpp"

#include <cuda_runtime.h>
#include <cub/block/block_reduce.cuh>
#include <cuda/functional>

#include <algorithm>

namespace attnpool::kernels {
namespace {

// Tuning of these memory-bound helpers: not measured on a GPU yet (none was available); 256
// threads is the usual choice for streaming kernels and leaves the CUB temp storage small.
constexpr int kScanThreads = 256;
constexpr int kRowThreads = 256;
constexpr int kNormThreads = 128;
constexpr int kMeanThreads = 256;

std::size_t ceil_div(std::size_t a, std::size_t b) {
  return (a + b - 1) / b;
}

__global__ void __launch_bounds__(kScanThreads)
    scan_inputs_kernel(const float* __restrict__ a, std::size_t rows, std::size_t cols,
                       std::size_t ld, unsigned long long* first_bad, unsigned int* max_abs_bits) {
  using min_reduce = cub::BlockReduce<unsigned long long, kScanThreads>;
  using max_reduce = cub::BlockReduce<float, kScanThreads>;
  __shared__ typename min_reduce::TempStorage min_tmp;
  __shared__ typename max_reduce::TempStorage max_tmp;

  unsigned long long bad = ~0ULL;
  float big = 0.0f;
  const std::size_t total = rows * cols;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * kScanThreads;
  for (std::size_t e = static_cast<std::size_t>(blockIdx.x) * kScanThreads + threadIdx.x; e < total;
       e += stride) {
    const std::size_t i = e / cols, j = e - i * cols;
    const float x = a[i * ld + j];
    if (!isfinite(x)) {
      bad = min(bad, static_cast<unsigned long long>(e));
    } else {
      big = fmaxf(big, fabsf(x));
    }
  }
  bad = min_reduce(min_tmp).Reduce(bad, ::cuda::minimum<>{});
  big = max_reduce(max_tmp).Reduce(big, ::cuda::maximum<>{});
  if (threadIdx.x == 0) {
    if (bad != ~0ULL) atomicMin(first_bad, bad);
    // Non-negative floats order like their bit patterns, so an integer max is a float max.
    if (max_abs_bits != nullptr) atomicMax(max_abs_bits, __float_as_uint(big));
  }
}

__global__ void __launch_bounds__(kNormThreads)
    center_norms_kernel(const float* __restrict__ x, std::size_t rows, std::size_t ldx,
                        const float* __restrict__ centre, int d, const dim_scales scales,
                        float* __restrict__ xc, float* __restrict__ xn) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * kNormThreads + threadIdx.x;
  if (i >= rows) return;  // no barrier in this kernel
  const float* src = x + i * ldx;
  float* dst = xc + i * static_cast<std::size_t>(d);
  float norm = 0.0f;
  for (int c = 0; c < d; ++c) {
    const float y = scales.active != 0 ? (src[c] - centre[c]) * scales.s[c] : src[c] - centre[c];
    dst[c] = y;
    norm = fmaf(y, y, norm);
  }
  xn[i] = norm;
}

template <class Score>
__global__ void __launch_bounds__(kRowThreads)
    row_softmax_kernel(float* __restrict__ s, std::size_t lds, std::size_t m,
                       const float* __restrict__ qn, const float* __restrict__ kn,
                       const Score score) {
  using reduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ typename reduce::TempStorage tmp;
  __shared__ float broadcast;

  const std::size_t row = blockIdx.x;
  float* srow = s + row * lds;
  const float nq = qn[row];

  // Pass 1: log2 scores in place, and their maximum. Rounding can push the expanded distance
  // slightly below 0; clamp, as the direct form never goes negative. Each element is owned by
  // one thread in all three passes, so the in-place updates never race.
  float mx = -INFINITY;
  for (std::size_t j = threadIdx.x; j < m; j += kRowThreads) {
    const float sc = score(fmaxf(nq + kn[j] + srow[j], 0.0f));
    srow[j] = sc;
    mx = fmaxf(mx, sc);
  }
  mx = reduce(tmp).Reduce(mx, ::cuda::maximum<>{});
  if (threadIdx.x == 0) broadcast = mx;
  __syncthreads();  // broadcast written; tmp free for reuse
  mx = broadcast;
  // A row with no key in a compact kernel's support: every weight 2^(-inf - 0) = 0, the sum 0
  // and the row 0 * inf = NaN, on purpose (-inf - -inf would give NaN less explicitly).
  const bool empty = mx == -INFINITY;
  if (empty) mx = 0.0f;

  // Pass 2: one exp2 per element against the row maximum, and the row sum (>= 1).
  float sum = 0.0f;
  for (std::size_t j = threadIdx.x; j < m; j += kRowThreads) {
    const float p = detail::fast_exp2(srow[j] - mx);
    srow[j] = p;
    sum += p;
  }
  sum = reduce(tmp).Sum(sum);
  __syncthreads();  // every thread has read `broadcast` (pass 1) before thread 0 rewrites it
  if (threadIdx.x == 0) broadcast = sum;
  __syncthreads();
  const float inv = empty ? __int_as_float(0x7fffffff) : 1.0f / broadcast;

  // Pass 3: normalise.
  for (std::size_t j = threadIdx.x; j < m; j += kRowThreads) srow[j] *= inv;
}

__global__ void __launch_bounds__(kMeanThreads)
    column_mean_kernel(const float* __restrict__ v, std::size_t rows, std::size_t ldv,
                       float* __restrict__ out, std::size_t out_rows, std::size_t ldo) {
  using reduce = cub::BlockReduce<double, kMeanThreads>;
  __shared__ typename reduce::TempStorage tmp;
  __shared__ float mean;
  const std::size_t c = blockIdx.x;
  double sum = 0.0;
  for (std::size_t j = threadIdx.x; j < rows; j += kMeanThreads) sum += v[j * ldv + c];
  sum = reduce(tmp).Sum(sum);
  if (threadIdx.x == 0) mean = static_cast<float>(sum / static_cast<double>(rows));
  __syncthreads();
  for (std::size_t i = threadIdx.x; i < out_rows; i += kMeanThreads) out[i * ldo + c] = mean;
}

}  // namespace

void scan_inputs(const_view a, unsigned long long* first_bad, unsigned int* max_abs_bits,
                 int sm_count, stream_t stream) {
  const std::size_t total = a.rows * a.cols;
  if (total == 0) return;
  const std::size_t blocks = std::min<std::size_t>(
      ceil_div(total, kScanThreads), static_cast<std::size_t>(std::max(sm_count, 1)) * 8);
  scan_inputs_kernel<<<static_cast<unsigned>(blocks), kScanThreads, 0, stream>>>(
      a.data, a.rows, a.cols, a.ld, first_bad, max_abs_bits);
  ATTNPOOL_CHECK_LAUNCH("scan_inputs_kernel");
}

void center_and_norms(const_view q, const_view k, float* qc, float* kc, float* qn, float* kn,
                      const dim_scales& scales, stream_t stream) {
  const int d = static_cast<int>(q.cols);
  // Keys row 0 is the centre; it is read in place (the kernels only read k).
  const float* centre = k.data;
  center_norms_kernel<<<static_cast<unsigned>(ceil_div(q.rows, kNormThreads)), kNormThreads, 0,
                        stream>>>(q.data, q.rows, q.ld, centre, d, scales, qc, qn);
  ATTNPOOL_CHECK_LAUNCH("center_norms_kernel(queries)");
  center_norms_kernel<<<static_cast<unsigned>(ceil_div(k.rows, kNormThreads)), kNormThreads, 0,
                        stream>>>(k.data, k.rows, k.ld, centre, d, scales, kc, kn);
  ATTNPOOL_CHECK_LAUNCH("center_norms_kernel(keys)");
}

void row_softmax(float* s, std::size_t lds, std::size_t n, std::size_t m, const float* qn,
                 const float* kn, kernel kind, float constant, stream_t stream) {
  if (n == 0) return;
  // Two instantiations: the Gaussian's own functor (unchanged code), and the run-time switch
  // over the kernel family for the rest.
  if (kind == kernel::gaussian) {
    row_softmax_kernel<<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
        s, lds, m, qn, kn, detail::gaussian_log2_score{constant});
  } else {
    row_softmax_kernel<<<static_cast<unsigned>(n), kRowThreads, 0, stream>>>(
        s, lds, m, qn, kn, detail::generic_log2_score{kind, constant});
  }
  ATTNPOOL_CHECK_LAUNCH("row_softmax_kernel");
}

void column_mean(const_view values, mutable_view out, stream_t stream) {
  if (out.rows == 0) return;
  column_mean_kernel<<<static_cast<unsigned>(values.cols), kMeanThreads, 0, stream>>>(
      values.data, values.rows, values.ld, out.data, out.rows, out.ld);
  ATTNPOOL_CHECK_LAUNCH("column_mean_kernel");
}

}  // namespace attnpool::kernels
