// Host side of the GPU leave-one-out sweep (src/cuda/backends.hpp: detail::cuda_loo_cv): x and y are
// copied to the device once per loo_cv_error / select_bandwidth call, then every evaluation
// (the whole grid, and each golden-section step) runs kernels/loo_sweep/sweep.cu on them.
#include <attnpool/cuda.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>

#include "src/cuda/backends.hpp"
#include "src/cuda/host.hpp"
#include "kernels/loo_sweep/params.hpp"
#include "kernels/common/cuda_check.hpp"
#include "src/validate/validate.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace attnpool::detail {
namespace {

using cuda::detail::device_buffer;

// Device memory one sweep launch may use for its nb x n row errors: 256 MiB holds all 64 grid
// bandwidths up to n = 5e5 in one launch; larger problems run the grid in batches of whole
// bandwidth groups (kernels::loo_batch_bandwidths).
constexpr std::size_t kRowErrorBudget = std::size_t{256} << 20;

// The host entry points' stream: concurrent callers on different threads do not serialise on
// the legacy default stream.
const stream_t kStream = cuda::detail::kHostStream;

}  // namespace

struct cuda_loo_cv::state {
  std::size_t n = 0, d = 0, dv = 0;
  device_buffer<float> x, y;
  // Grown on demand and kept across evaluations (the golden-section steps reuse them).
  device_buffer<float> neg_scale;
  device_buffer<double> row_error;
  device_buffer<double> cv;
};

cuda_loo_cv::cuda_loo_cv(const_view x, const_view y) {
  constexpr const char* fn = "loo_cv_error(cuda_fused)";
  if (cuda::device_count() == 0)
    throw cuda_error(concat(fn,
                            ": no CUDA device is available (use backend cpu or reference, or "
                            "automatic, which picks the CPU where no GPU exists)"));
  check_int_dims(fn, x.cols, y.cols);
  s_ = std::make_unique<state>();
  s_->n = x.rows;
  s_->d = x.cols;
  s_->dv = y.cols;
  s_->x = cuda::detail::upload(x, "bandwidth sweep inputs x", kStream);
  s_->y = cuda::detail::upload(y, "bandwidth sweep targets y", kStream);
}

cuda_loo_cv::~cuda_loo_cv() = default;

std::vector<double> cuda_loo_cv::operator()(std::span<const double> bandwidths) {
  state& s = *s_;
  const std::size_t nb = bandwidths.size();
  std::vector<double> cv(nb, 0.0);
  if (nb == 0) return cv;

  // The shared Gaussian constant per bandwidth, rounded once from double as the CPU sweep does.
  std::vector<float> neg(nb);
  for (std::size_t b = 0; b < nb; ++b)
    neg[b] = static_cast<float>(-gaussian_log2_scale(bandwidths[b]));

  const std::size_t batch = kernels::loo_batch_bandwidths(s.n, nb, kRowErrorBudget);
  if (s.neg_scale.size() < nb) s.neg_scale = device_buffer<float>(nb, "bandwidth constants");
  if (s.cv.size() < nb) s.cv = device_buffer<double>(nb, "cv errors");
  const std::size_t rows_needed =
      checked_mul("loo_cv_error(cuda_fused)", "bandwidths * n row errors", batch, s.n);
  if (s.row_error.size() < rows_needed)
    s.row_error = device_buffer<double>(rows_needed, "per-row leave-one-out errors");

  ATTNPOOL_CUDA_TRY(cudaMemcpyAsync(s.neg_scale.data(), neg.data(), nb * sizeof(float),
                                    cudaMemcpyHostToDevice, kStream));
  const double count = static_cast<double>(s.n) * static_cast<double>(s.dv);
  for (std::size_t b0 = 0; b0 < nb; b0 += batch) {
    const std::size_t len = std::min(batch, nb - b0);
    kernels::launch_loo_sweep(
        kernels::loo_sweep_args_of(const_view{s.x.data(), s.n, s.d}, const_view{s.y.data(), s.n, s.dv},
                                   s.neg_scale.data() + b0, static_cast<int>(len),
                                   s.row_error.data()),
        kStream);
    kernels::launch_loo_reduce(s.row_error.data(), s.n, static_cast<int>(len), count,
                               s.cv.data() + b0, kStream);
  }
  ATTNPOOL_CUDA_TRY(cudaMemcpyAsync(cv.data(), s.cv.data(), nb * sizeof(double),
                                    cudaMemcpyDeviceToHost, kStream));
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(kStream));
  return cv;
}

}  // namespace attnpool::detail
