// pool_backward: validation, then the reference, the CPU engine or the fused GPU backward.
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/api/guarded_output.hpp"
#include "src/cpu/engine.hpp"
#include "src/cuda/backends.hpp"
#include "src/reference/engine.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace attnpool {

void pool_backward(const_view q, const_view k, const_view v, const_view dout,
                   const pool_gradients& grads, const pool_params& params, const options& opts) {
  constexpr const char* fn = "pool_backward";
  const backend b =
      detail::choose_backend({fn, detail::entry_point::learning, opts.backend, q.cols});
  detail::reject_non_gaussian(fn, params);
  const auto shape =
      detail::check_pool_args(fn, q, k, v, dout, params, detail::mask_support::host, "dout");
  detail::check_optional_output(fn, "grads.queries", grads.queries, shape.n, shape.d);
  detail::check_optional_output(fn, "grads.keys", grads.keys, shape.m, shape.d);
  detail::check_optional_output(fn, "grads.values", grads.values, shape.m, shape.dv);
  // Every gradient apart from every input and from the other gradients.
  const std::pair<const char*, const_view> ins[] = {
      {"queries", q}, {"keys", k}, {"values", v}, {"dout", dout}};
  const std::pair<const char*, const_view> outs[] = {
      {"grads.queries", grads.queries}, {"grads.keys", grads.keys}, {"grads.values", grads.values}};
  for (std::size_t a = 0; a < 3; ++a) {
    for (const auto& [name, in] : ins)
      detail::check_disjoint(fn, outs[a].first, outs[a].second, name, in);
    for (std::size_t o = a + 1; o < 3; ++o)
      detail::check_disjoint(fn, outs[a].first, outs[a].second, outs[o].first, outs[o].second);
  }
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
  if (b == backend::cuda_fused)
    detail::choose_backend({fn, detail::entry_point::learning, b, shape.d, &params});
  // Values and dout near float32's range: dv is linear in dout, the other gradients in the
  // products dout . v, so powers of two a on v and c on dout scale them back exactly.
  const double terms = static_cast<double>(std::max(shape.n, shape.m));
  const double v_max = detail::max_magnitude(v), dout_max = detail::max_magnitude(dout);
  const int c = detail::overflow_shift(dout_max, terms);
  int a = detail::overflow_shift(v_max, terms);
  a += detail::overflow_shift(std::ldexp(v_max, -a) * std::ldexp(dout_max, -c),
                              terms * static_cast<double>(shape.dv));
  const std::vector<float> vs = a == 0 ? std::vector<float>{}
                                       : detail::scaled_copy(v, std::vector<int>(v.cols, a));
  const std::vector<float> ds = c == 0 ? std::vector<float>{}
                                       : detail::scaled_copy(dout, std::vector<int>(dout.cols, c));
  const const_view v_run = a == 0 ? v : const_view{vs.data(), v.rows, v.cols};
  const const_view dout_run = c == 0 ? dout : const_view{ds.data(), dout.rows, dout.cols};
  switch (b) {
    case backend::reference:
      detail::reference_backward(q, k, v_run, dout_run, grads, params);
      break;
    case backend::cuda_fused:
      detail::cuda_backward_host(q, k, v_run, dout_run, grads, params);
      break;
    default: detail::cpu_backward(q, k, v_run, dout_run, grads, params, opts.threads); break;
  }
  if (a == 0 && c == 0) return;
  for (mutable_view g : {grads.queries, grads.keys})
    if (g.data != nullptr)
      for (std::size_t i = 0; i < g.rows; ++i)
        for (std::size_t j = 0; j < g.cols; ++j) g(i, j) = std::ldexp(g(i, j), a + c);
  if (grads.values.data != nullptr)
    for (std::size_t i = 0; i < grads.values.rows; ++i)
      for (std::size_t j = 0; j < grads.values.cols; ++j)
        grads.values(i, j) = std::ldexp(grads.values(i, j), c);
  if (grads.bandwidth != nullptr) *grads.bandwidth = std::ldexp(*grads.bandwidth, a + c);
}

}  // namespace attnpool
