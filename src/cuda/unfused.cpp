// The unfused (cuBLAS) path: it materialises the n x m matrix, so it is the baseline the fused
// kernel is measured against and the engine behind attention_weights on the GPU.
//
//   1. centre_and_norms: qc = q - k_0, kc = k - k_0 (dense, ld = d) and ||qc||^2, ||kc||^2
//   2. cublasSgemm:      S = -2 qc kc^T                              (n x m, row-major)
//   3. row_softmax:      W = softmax_j(neg_scale * max(||qc||^2 + ||kc||^2 + S, 0))  in place
//   4. cublasSgemm:      out = W v                                    (pool only)
//
// Row-major vs column-major: a row-major r x c matrix with leading dimension ld is, to cuBLAS,
// the column-major c x r matrix (its transpose) with the same ld. So row-major C = A B is
// computed as column-major C^T = B^T A^T: swap the operands, keep the leading dimensions.
//
// Accuracy: the expansion ||q||^2 + ||k||^2 - 2 q.k rounds relative to the norms, not to the
// distance; centring on keys row 0 keeps the norms at the scale of the data's spread (and of
// the distance for far-away queries) instead of the distance from the origin. The GPU tests
// derive the extra tolerance this needs (tests/cuda/test_cuda_unfused.cpp).
#include <attnpool/error.hpp>

#include "kernels/common/cuda_check.hpp"
#include "kernels/common/workspace.hpp"
#include "kernels/support/support.hpp"
#include "src/cuda/cublas_check.hpp"
#include "src/cuda/cublas_library.hpp"
#include "src/cuda/host.hpp"
#include "src/validate/validate.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>

namespace attnpool::cuda::detail {
namespace {

using ::attnpool::detail::checked_mul;
using kernels::align_up;

// cuBLAS gets its scratch from our workspace (cublasSetWorkspace) so that the device-pointer
// API allocates nothing per call, and two calls on different streams never share scratch.
// 4 MiB: NVIDIA's documented recommendation for Hopper is 32 MiB for the widest GEMMs, but our
// GEMMs have a tiny inner dimension (d) or a skinny output (dv); not yet measured on a GPU.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{4} << 20;

// Offsets into the unfused workspace:
//   [scan slot][qc n*d][kc m*d][qn n][kn m][cuBLAS scratch][W n*m (pool only)]
struct unfused_layout {
  std::size_t qc = 0, kc = 0, qn = 0, kn = 0, cublas = 0, weights = 0, total = 0;
};

unfused_layout layout_for(const char* fn, std::size_t n, std::size_t m, std::size_t d,
                          bool with_weights) {
  unfused_layout l;
  std::size_t off = kScanBytes;
  auto take = [&](std::size_t bytes) {
    const std::size_t at = off;
    off = align_up(off + bytes);
    ATTNPOOL_EXPECTS(off >= at, fn, ": workspace size overflows size_t");
    return at;
  };
  l.qc = take(checked_mul(fn, "n * d", n, d) * sizeof(float));
  l.kc = take(checked_mul(fn, "m * d", m, d) * sizeof(float));
  l.qn = take(n * sizeof(float));
  l.kn = take(m * sizeof(float));
  l.cublas = take(kCublasWorkspaceBytes);
  if (with_weights) {
    l.weights =
        take(checked_mul(fn, "n * m * 4 bytes", checked_mul(fn, "n * m", n, m), sizeof(float)));
  }
  l.total = off;
  return l;
}

// One cuBLAS handle per (host thread, device): a handle must not be used by two threads at
// once, and creating one per call costs far more than the GEMMs of a small problem. Created on
// first use (cublasCreate allocates its own small state then: the one allocation outside the
// workspace, once per thread and device; the first one loads cuBLAS, see cublas_library.hpp);
// destroyed at thread exit, ignoring errors because the CUDA runtime may already be shutting
// down.
class handle_cache {
 public:
  handle_cache() = default;
  handle_cache(const handle_cache&) = delete;
  handle_cache& operator=(const handle_cache&) = delete;
  ~handle_cache() {
    for (cublasHandle_t h : handles_)
      if (h != nullptr) static_cast<void>(cublas().destroy(h));
  }
  cublasHandle_t get() {
    int device = 0;
    ATTNPOOL_CUDA_TRY(cudaGetDevice(&device));
    ATTNPOOL_EXPECTS(device >= 0 && static_cast<std::size_t>(device) < handles_.size(),
                     "cuBLAS handle cache: device ", device, " is beyond the ", handles_.size(),
                     " devices supported");
    cublasHandle_t& h = handles_[static_cast<std::size_t>(device)];
    if (h == nullptr) {
      ATTNPOOL_CUBLAS_TRY(cublas().create(&h));
      // FP32 maths, no TF32 down-conversion: the tests hold this path to fp32 accuracy.
      ATTNPOOL_CUBLAS_TRY(cublas().set_math_mode(h, CUBLAS_DEFAULT_MATH));
      ATTNPOOL_CUBLAS_TRY(cublas().set_pointer_mode(h, CUBLAS_POINTER_MODE_HOST));
    }
    return h;
  }

 private:
  std::array<cublasHandle_t, 64> handles_{};
};

cublasHandle_t handle_for(stream_t stream, void* scratch) {
  thread_local handle_cache cache;
  cublasHandle_t h = cache.get();
  // cublasSetStream resets the workspace to cuBLAS's default pool, so set ours after it.
  ATTNPOOL_CUBLAS_TRY(cublas().set_stream(h, stream));
  ATTNPOOL_CUBLAS_TRY(cublas().set_workspace(h, scratch, kCublasWorkspaceBytes));
  return h;
}

std::byte* at(const options& opts, std::size_t offset) {
  return static_cast<std::byte*>(opts.workspace) + offset;
}

// Steps 1-3 shared by pool and attention_weights: W (n x m, row stride ldw) gets the weights.
void weights_into(const_view q, const_view k, float* w, std::size_t ldw, const pool_params& params,
                  const options& opts, const unfused_layout& l) {
  const std::size_t n = q.rows, m = k.rows, d = q.cols;
  auto* qc = reinterpret_cast<float*>(at(opts, l.qc));
  auto* kc = reinterpret_cast<float*>(at(opts, l.kc));
  auto* qn = reinterpret_cast<float*>(at(opts, l.qn));
  auto* kn = reinterpret_cast<float*>(at(opts, l.kn));
  // The anisotropic bandwidth scales the centred coordinates by 1 / h_c (the expansion below
  // is not exact in any case; the fused path weights exact differences instead).
  const gpu_kernel g = gpu_kernel_for(params);
  kernels::dim_scales scales;
  if (g.weighted) {
    scales.active = 1;
    for (std::size_t c = 0; c < d; ++c)
      scales.s[c] = static_cast<float>(1.0 / params.bandwidths[c]);
  }
  kernels::center_and_norms(q, k, qc, kc, qn, kn, scales, opts.stream);

  cublasHandle_t h = handle_for(opts.stream, at(opts, l.cublas));
  // Row-major S (n x m, ld ldw) = -2 qc kc^T  <=>  column-major S^T (m x n) = -2 kc qc^T, where
  // kc (row-major m x d, ld d) is column-major d x m: op = transpose; qc likewise d x n: no op.
  const float alpha = -2.0f, beta = 0.0f;
  ATTNPOOL_CUBLAS_TRY(cublas().sgemm_64(
      h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<std::int64_t>(m), static_cast<std::int64_t>(n),
      static_cast<std::int64_t>(d), &alpha, kc, static_cast<std::int64_t>(d), qc,
      static_cast<std::int64_t>(d), &beta, w, static_cast<std::int64_t>(ldw)));
  kernels::row_softmax(w, ldw, n, m, qn, kn, g.kind, g.constant, opts.stream);
}

}  // namespace

std::size_t unfused_pool_workspace_size(std::size_t n, std::size_t m, std::size_t d) {
  return layout_for("cuda::pool_workspace_size", n, m, d, true).total;
}

std::size_t unfused_weights_workspace_size(std::size_t n, std::size_t m, std::size_t d) {
  return layout_for("cuda::attention_weights_workspace_size", n, m, d, false).total;
}

void unfused_pool(const char* fn, const_view q, const_view k, const_view v, mutable_view out,
                  const pool_params& params, const options& opts) {
  const auto s = ::attnpool::detail::check_pool_args(fn, q, k, v, out, params);
  if (s.n == 0) return;
  const unfused_layout l = layout_for(fn, s.n, s.m, s.d, true);
  check_workspace(fn, opts, l.total);
  if (opts.check_finite)
    check_inputs_on_device(fn, q, k, v, params, k.rows, at(opts, 0), opts.stream);

  auto* w = reinterpret_cast<float*>(at(opts, l.weights));
  weights_into(q, k, w, s.m, params, opts, l);
  // Row-major out (n x dv, ld out.ld) = W v  <=>  column-major out^T (dv x n) = v^T W^T, where
  // v (row-major m x dv, ld v.ld) is column-major dv x m and W (n x m, ld m) is m x n.
  cublasHandle_t h = handle_for(opts.stream, at(opts, l.cublas));
  const float one = 1.0f, zero = 0.0f;
  ATTNPOOL_CUBLAS_TRY(cublas().sgemm_64(
      h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<std::int64_t>(s.dv), static_cast<std::int64_t>(s.n),
      static_cast<std::int64_t>(s.m), &one, v.data, static_cast<std::int64_t>(v.ld), w,
      static_cast<std::int64_t>(s.m), &zero, out.data, static_cast<std::int64_t>(out.ld)));
  // An empty row's NaN weights make its output row NaN through the GEMM.
  check_empty_rows_on_device(fn, params, out, at(opts, 0), opts.stream);
}

void unfused_weights(const char* fn, const_view q, const_view k, mutable_view w,
                     const pool_params& params, const options& opts) {
  const auto s = ::attnpool::detail::check_weights_args(fn, q, k, w, params);
  if (s.n == 0) return;
  const unfused_layout l = layout_for(fn, s.n, s.m, s.d, false);
  check_workspace(fn, opts, l.total);
  if (opts.check_finite) {
    check_inputs_on_device(fn, q, k, const_view{}, params, 0, at(opts, 0), opts.stream);
  }
  weights_into(q, k, w.data, w.ld, params, opts, l);
  check_empty_rows_on_device(fn, params, w, at(opts, 0), opts.stream);
}

}  // namespace attnpool::cuda::detail
