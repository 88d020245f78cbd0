// The tiled backward phases (backward_tiled_traits in kernels/backward/params.hpp): shared-memory
// tiles, the walked side split into ranges, and the fixed-order merges of the ranges' sums.
#include "kernels/backward/kernel.cuh"

#include <cstdlib>
#include <string_view>

namespace attnpool::kernels {

bool tiled_backward() {
  static const bool on = [] {
    const char* env = std::getenv("ATTNPOOL_CUDA_TILED_BACKWARD");
    return env != nullptr && std::string_view(env) == "1";
  }();
  return on;
}

backward_split plan_backward_rows(std::size_t n, std::size_t m, std::size_t d, int sm_count) {
  backward_split sp;
  dispatch_backward(d, 1, [&](auto dc, auto) {
    constexpr int D = decltype(dc)::value;
    using tiled = backward_tiled_traits<D>;
    sp = plan_backward_split(backward_blocks<D>(n), n, m, tiled::kTile, tiled::kRowPartial,
                             sm_count);
  });
  return sp;
}

backward_split plan_backward_keys(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                  int sm_count) {
  backward_split sp;
  dispatch_backward(d, static_cast<int>(dv), [&](auto dc, auto dv1) {
    constexpr int D = decltype(dc)::value;
    constexpr int kW = backward_value_window<D, decltype(dv1)::value>;
    const std::size_t windows = (dv + kW - 1) / kW;
    sp = plan_backward_split(backward_blocks<D>(m) * windows, m, n, backward_tiled_traits<D>::kTile,
                             key_partial_floats<D>(static_cast<int>(dv)), sm_count);
  });
  return sp;
}

std::size_t backward_partial_floats(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                    const backward_split& rows, const backward_split& keys) {
  std::size_t floats = 0;
  dispatch_backward(d, static_cast<int>(dv), [&](auto dc, auto) {
    constexpr int D = decltype(dc)::value;
    const std::size_t r =
        rows.splits > 1 ? rows.splits * n * backward_tiled_traits<D>::kRowPartial : 0;
    const std::size_t k =
        keys.splits > 1 ? keys.splits * m * key_partial_floats<D>(static_cast<int>(dv)) : 0;
    floats = r > k ? r : k;  // the phases run one after the other: one region serves both
  });
  return floats;
}

void launch_backward_rows_tiled(const backward_args& a, const backward_split& sp, float* partials,
                                stream_t stream) {
  if (a.n == 0) return;
  dispatch_backward(static_cast<std::size_t>(a.d), a.dv, [&](auto dc, auto dv1) {
    constexpr int D = decltype(dc)::value;
    constexpr bool kDv1 = decltype(dv1)::value;
    const dim3 grid(backward_blocks<D>(a.n), static_cast<unsigned>(sp.splits));
    backward_rows_tiled_kernel<D, kDv1>
        <<<grid, backward_traits<D>::kThreads, 0, stream>>>(a, sp, partials);
    ATTNPOOL_CHECK_LAUNCH("backward_rows_tiled_kernel");
    if (sp.splits > 1) {
      backward_rows_merge_kernel<D>
          <<<backward_blocks<D>(a.n), backward_traits<D>::kThreads, 0, stream>>>(a, sp.splits,
                                                                               partials);
      ATTNPOOL_CHECK_LAUNCH("backward_rows_merge_kernel");
    }
  });
}

void launch_backward_keys_tiled(const backward_args& a, const backward_split& sp, float* partials,
                                stream_t stream) {
  if (a.m == 0 || (a.dk == nullptr && a.dvv == nullptr)) return;
  dispatch_backward(static_cast<std::size_t>(a.d), a.dv, [&](auto dc, auto dv1) {
    constexpr int D = decltype(dc)::value;
    constexpr bool kDv1 = decltype(dv1)::value;
    const unsigned windows = backward_windows<D, kDv1>(a);
    const dim3 grid(backward_blocks<D>(a.m), windows, static_cast<unsigned>(sp.splits));
    backward_keys_tiled_kernel<D, kDv1>
        <<<grid, backward_traits<D>::kThreads, 0, stream>>>(a, sp, partials);
    ATTNPOOL_CHECK_LAUNCH("backward_keys_tiled_kernel");
    if (sp.splits > 1) {
      backward_keys_merge_kernel<D>
          <<<backward_blocks<D>(a.m), backward_traits<D>::kThreads, 0, stream>>>(a, sp.splits,
                                                                               partials);
      ATTNPOOL_CHECK_LAUNCH("backward_keys_merge_kernel");
    }
  });
}

}  // namespace attnpool::kernels
