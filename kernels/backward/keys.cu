// The backward pass's key phase (dk and dv) and the fixed-order dh reduction; see
// kernels/backward/params.hpp for the phases.
#include "kernels/backward/kernel.cuh"

namespace attnpool::kernels {
namespace {

constexpr unsigned kDhThreads = 256;

// One block: thread t sums rows t, t + 256, ... in double, then a tree in shared memory. The
// order depends only on n, so the result is bitwise repeatable.
__global__ void __launch_bounds__(kDhThreads)
    backward_dh_kernel(const float* __restrict__ rows, std::size_t n, double scale,
                       double* __restrict__ out) {
  __shared__ double part[kDhThreads];
  double acc = 0.0;
  for (std::size_t i = threadIdx.x; i < n; i += kDhThreads) acc += static_cast<double>(rows[i]);
  part[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned s = kDhThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = part[0] * scale;
}

}  // namespace

void launch_backward_keys(const backward_args& a, stream_t stream) {
  if (a.m == 0 || (a.dk == nullptr && a.dvv == nullptr)) return;
  dispatch_backward(static_cast<std::size_t>(a.d), a.dv, [&](auto dc, auto dv1) {
    constexpr int D = decltype(dc)::value;
    constexpr bool kDv1 = decltype(dv1)::value;
    const unsigned windows = backward_windows<D, kDv1>(a);
    const dim3 grid(backward_blocks<D>(a.m), windows);
    backward_keys_kernel<D, kDv1><<<grid, backward_traits<D>::kThreads, 0, stream>>>(a);
    ATTNPOOL_CHECK_LAUNCH("backward_keys_kernel");
  });
}

void launch_backward_dh(const float* dh_rows, std::size_t n, double scale, double* dh,
                        stream_t stream) {
  backward_dh_kernel<<<1, kDhThreads, 0, stream>>>(dh_rows, n, scale, dh);
  ATTNPOOL_CHECK_LAUNCH("backward_dh_kernel");
}

}  // namespace attnpool::kernels
