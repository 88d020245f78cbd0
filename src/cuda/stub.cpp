// Built instead of src/cuda/ when attnpool is configured without CUDA: every CUDA entry point
// exists and throws one clear error, so callers link and fail loudly rather than silently.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/multi_gpu.hpp>

#include "src/cuda/backends.hpp"

namespace attnpool {
namespace {
[[noreturn]] void no_cuda(const char* fn) {
  throw cuda_error(detail::concat(fn, ": attnpool was built without CUDA (configure with "
                                      "-DATTNPOOL_CUDA=ON on a machine with the CUDA Toolkit)"));
}
}  // namespace

void detail::cuda_pool_host(const_view, const_view, const_view, mutable_view, const pool_params&,
                            backend b) {
  no_cuda(b == backend::cuda_unfused ? "pool(cuda_unfused)" : "pool(cuda_fused)");
}
void detail::cuda_weights_host(const_view, const_view, mutable_view, const pool_params&) {
  no_cuda("attention_weights(cuda)");
}
void detail::cuda_average_host(const_view, mutable_view) { no_cuda("average_pool(cuda)"); }
void detail::cuda_backward_host(const_view, const_view, const_view, const_view,
                                const pool_gradients&, const pool_params&) {
  no_cuda("pool_backward(cuda_fused)");
}
std::size_t cuda::pool_backward_workspace_size(std::size_t, std::size_t, std::size_t,
                                               std::size_t, const pool_params&) {
  no_cuda("cuda::pool_backward_workspace_size");
}
void cuda::pool_backward(const_view, const_view, const_view, const_view, const pool_gradients&,
                         const pool_params&, const options&) {
  no_cuda("cuda::pool_backward");
}

struct detail::cuda_loo_cv::state {};
detail::cuda_loo_cv::cuda_loo_cv(const_view, const_view) { no_cuda("loo_cv_error(cuda_fused)"); }
detail::cuda_loo_cv::~cuda_loo_cv() = default;
std::vector<double> detail::cuda_loo_cv::operator()(std::span<const double>) {
  no_cuda("loo_cv_error(cuda_fused)");
}

std::size_t cuda::pool_workspace_size(std::size_t, std::size_t, std::size_t, std::size_t,
                                      const pool_params&, backend) {
  no_cuda("cuda::pool_workspace_size");
}
void cuda::pool(const_view, const_view, const_view, mutable_view, const pool_params&,
                const options&) {
  no_cuda("cuda::pool");
}
std::size_t cuda::attention_weights_workspace_size(std::size_t, std::size_t, std::size_t,
                                                   const pool_params&) {
  no_cuda("cuda::attention_weights_workspace_size");
}
void cuda::attention_weights(const_view, const_view, mutable_view, const pool_params&,
                             const options&) {
  no_cuda("cuda::attention_weights");
}
void cuda::average_pool(const_view, mutable_view, const options&) { no_cuda("cuda::average_pool"); }
void detail::cuda_pool_batched_host(const_view, const_view, const_view, mutable_view,
                                    std::span<const std::size_t>, std::span<const std::size_t>,
                                    const pool_params&) {
  no_cuda("pool_batched(cuda_fused)");
}
void detail::cuda_pool_partial_host(const_view, const_view, const_view, const mutable_partials&,
                                    const pool_params&) {
  no_cuda("pool_partial(cuda_fused)");
}
std::size_t cuda::pool_batched_workspace_size(std::size_t, std::size_t, std::size_t, std::size_t,
                                              const pool_params&) {
  no_cuda("cuda::pool_batched_workspace_size");
}
void cuda::pool_batched(const_view, const_view, const_view, mutable_view,
                        std::span<const std::size_t>, std::span<const std::size_t>,
                        const pool_params&, const options&) {
  no_cuda("cuda::pool_batched");
}
std::size_t cuda::pool_partial_workspace_size(std::size_t, std::size_t, std::size_t, std::size_t,
                                              const pool_params&) {
  no_cuda("cuda::pool_partial_workspace_size");
}
void cuda::pool_partial(const_view, const_view, const_view, const partial_view&,
                        const pool_params&, const options&) {
  no_cuda("cuda::pool_partial");
}
std::size_t cuda::merge_partials_workspace_size(const pool_params&) {
  no_cuda("cuda::merge_partials_workspace_size");
}
void cuda::merge_partials(const stacked_partials&, mutable_view, const pool_params&,
                          const options&) {
  no_cuda("cuda::merge_partials");
}
void pool_sharded(const_view, const_view, const_view, mutable_view, const pool_params&,
                  const sharding&, const options&) {
  no_cuda("pool_sharded");
}
int cuda::device_count() noexcept { return 0; }

}  // namespace attnpool
