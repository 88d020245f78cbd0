// The backward pass's row phase (lse2, D_i, dq, dh shares), one instantiation per compiled
// query dimension D and dv == 1 / general dv; see kernels/backward/params.hpp.
#include "kernels/backward/kernel.cuh"

namespace attnpool::kernels {

void launch_backward_rows(const backward_args& a, stream_t stream) {
  if (a.n == 0) return;
  dispatch_backward(static_cast<std::size_t>(a.d), a.dv, [&](auto dc, auto dv1) {
    constexpr int D = decltype(dc)::value;
    constexpr bool kDv1 = decltype(dv1)::value;
    backward_rows_kernel<D, kDv1>
        <<<backward_blocks<D>(a.n), backward_traits<D>::kThreads, 0, stream>>>(a);
    ATTNPOOL_CHECK_LAUNCH("backward_rows_kernel");
  });
}

}  // namespace attnpool::kernels
