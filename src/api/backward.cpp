// pool_backward: validation, then the reference, the CPU engine or the fused GPU backward.
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/cpu/engine.hpp"
#include "src/cuda/backends.hpp"
#include "src/reference/engine.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>

namespace attnpool {

void pool_backward(const_view q, const_view k, const_view v, const_view dout,
                   const pool_gradients& grads, const pool_params& params, const options& opts) {
  constexpr const char* fn = "pool_backward";
  const backend b =
      detail::choose_backend({fn, detail::entry_point::learning, opts.backend, q.cols});
  detail::reject_non_gaussian(fn, params);
  const auto shape = detail::check_pool_args(fn, q, k, v, dout, params, detail::mask_support::host);
  detail::check_optional_output(fn, "grads.queries", grads.queries, shape.n, shape.d);
  detail::check_optional_output(fn, "grads.keys", grads.keys, shape.m, shape.d);
  detail::check_optional_output(fn, "grads.values", grads.values, shape.m, shape.dv);
  if (opts.check_finite) {
    detail::check_finite_host(fn, "queries", q);
    detail::check_finite_host(fn, "keys", k);
    detail::check_finite_host(fn, "values", v);
    detail::check_finite_host(fn, "dout", dout);
    detail::check_score_range_host(fn, q, k, params);
  }
  if (shape.n == 0) {  // no queries: every gradient is zero
    for (mutable_view a : {grads.keys, grads.values})
      if (a.data != nullptr)
        for (std::size_t j = 0; j < a.rows; ++j) std::fill(a.row(j), a.row(j) + a.cols, 0.0f);
    if (grads.bandwidth != nullptr) *grads.bandwidth = 0.0;
    return;
  }
  if (b == backend::reference) return detail::reference_backward(q, k, v, dout, grads, params);
  if (b == backend::cuda_fused) {
    detail::choose_backend({fn, detail::entry_point::learning, b, shape.d, &params});
    return detail::cuda_backward_host(q, k, v, dout, grads, params);
  }
  detail::cpu_backward(q, k, v, dout, grads, params, opts.threads);
}

}  // namespace attnpool
