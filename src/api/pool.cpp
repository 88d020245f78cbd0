// Public host entry points: validate once, then hand over to the chosen backend.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>

#include "src/api/guarded_output.hpp"
#include "src/cpu/engine.hpp"
#include "src/cuda/backends.hpp"
#include "src/reference/engine.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

namespace attnpool {

bool cuda_available() noexcept { return cuda::device_count() > 0; }

backend resolve_backend(backend requested) {
  return detail::choose_backend({"resolve_backend", detail::entry_point::pool, requested});
}

namespace {

// Whether a host engine may throw after writing the output: a compact kernel's empty row under
// empty_support::error is found while the rows are computed.
bool may_throw_after_writing(backend b, const pool_params& params) {
  return (b == backend::reference || b == backend::cpu) && is_compact(params.kernel) &&
         params.empty == empty_support::error;
}

}  // namespace

void pool(const_view q, const_view k, const_view v, mutable_view out, const pool_params& params,
          const options& opts) {
  constexpr const char* fn = "pool";
  const auto shape =
      detail::check_pool_args(fn, q, k, v, out, params, detail::mask_support::host);
  detail::check_disjoint(fn, "out", out, "queries", q);
  detail::check_disjoint(fn, "out", out, "keys", k);
  detail::check_disjoint(fn, "out", out, "values", v);
  if (shape.n == 0) return;
  const backend b =
      detail::choose_backend({fn, detail::entry_point::pool, opts.backend, q.cols, &params});
  detail::check_inputs_host(fn, opts, q, k, v, params);
  const detail::guarded_output g(v, shape.m, out, may_throw_after_writing(b, params));
  switch (b) {
    case backend::reference: detail::reference_pool(q, k, g.values(), g.out(), params); break;
    case backend::cpu: detail::cpu_pool(q, k, g.values(), g.out(), params, opts.threads); break;
    case backend::cuda_fused:
    case backend::cuda_unfused:
      detail::cuda_pool_host(q, k, g.values(), g.out(), params, b);
      break;
    case backend::automatic:
      throw invalid_argument(detail::concat(fn, ": unknown backend ", static_cast<int>(b)));
  }
  g.commit();
}

void attention_weights(const_view q, const_view k, mutable_view w, const pool_params& params,
                       const options& opts) {
  constexpr const char* fn = "attention_weights";
  const auto shape =
      detail::check_weights_args(fn, q, k, w, params, detail::mask_support::host);
  detail::check_disjoint(fn, "weights", w, "queries", q);
  detail::check_disjoint(fn, "weights", w, "keys", k);
  if (shape.n == 0) return;
  const backend b = detail::choose_backend(
      {fn, detail::entry_point::attention_weights, opts.backend, q.cols, &params});
  detail::check_inputs_host(fn, opts, q, k, const_view{}, params);
  const detail::guarded_output g(const_view{}, 0, w, may_throw_after_writing(b, params));
  switch (b) {
    case backend::reference: detail::reference_weights(q, k, g.out(), params); break;
    case backend::cpu: detail::cpu_weights(q, k, g.out(), params, opts.threads); break;
    case backend::cuda_fused:
    case backend::cuda_unfused: detail::cuda_weights_host(q, k, g.out(), params); break;
    case backend::automatic:
      throw invalid_argument(detail::concat(fn, ": unknown backend ", static_cast<int>(b)));
  }
  g.commit();
}

void average_pool(const_view values, mutable_view out, const options& opts) {
  constexpr const char* fn = "average_pool";
  detail::check_average_args(fn, values, out);
  detail::check_disjoint(fn, "out", out, "values", values);
  if (out.rows == 0) return;
  if (opts.check_finite) detail::check_finite_host(fn, "values", values);
  const backend b = detail::choose_backend({fn, detail::entry_point::average_pool, opts.backend});
  if (b == backend::cuda_fused || b == backend::cuda_unfused)
    return detail::cuda_average_host(values, out);
  // Column means accumulated in double: exact enough for any m a float input can carry.
  for (std::size_t c = 0; c < values.cols; ++c) {
    double sum = 0.0;
    for (std::size_t j = 0; j < values.rows; ++j) sum += values(j, c);
    const auto mean = static_cast<float>(sum / static_cast<double>(values.rows));
    for (std::size_t i = 0; i < out.rows; ++i) out(i, c) = mean;
  }
}

std::vector<float> pool(std::span<const float> queries, std::span<const float> keys,
                        std::span<const float> values, std::size_t d, const pool_params& params,
                        const options& opts) {
  constexpr const char* fn = "pool";
  ATTNPOOL_EXPECTS(d >= 1, fn, ": d must be >= 1, got ", d);
  ATTNPOOL_EXPECTS(queries.size() % d == 0, fn, ": queries.size() (", queries.size(),
                   ") must be a multiple of d (", d, ")");
  ATTNPOOL_EXPECTS(keys.size() % d == 0, fn, ": keys.size() (", keys.size(),
                   ") must be a multiple of d (", d, ")");
  const std::size_t n = queries.size() / d, m = keys.size() / d;
  ATTNPOOL_EXPECTS(m >= 1, fn, ": keys must hold at least one key, got ", keys.size(), " floats");
  ATTNPOOL_EXPECTS(values.size() % m == 0 && !values.empty(), fn, ": values.size() (",
                   values.size(), ") must be a positive multiple of the key count m (", m, ")");
  const std::size_t dv = values.size() / m;
  // Everything is checked before the result is allocated; the shape-only view is never read.
  const float shape_only = 0.0f;
  detail::check_pool_args(fn, const_view{queries.data(), n, d}, const_view{keys.data(), m, d},
                          const_view{values.data(), m, dv}, const_view{&shape_only, n, dv, dv},
                          params, detail::mask_support::host);
  std::vector<float> out(n * dv);
  pool(const_view{queries.data(), n, d}, const_view{keys.data(), m, d},
       const_view{values.data(), m, dv}, mutable_view{out.data(), n, dv}, params, opts);
  return out;
}

std::vector<float> pool(std::span<const float> queries, std::span<const float> keys,
                        std::span<const float> values, const pool_params& params,
                        const options& opts) {
  return pool(queries, keys, values, 1, params, opts);
}

std::vector<float> attention_weights(std::span<const float> queries, std::span<const float> keys,
                                     std::size_t d, const pool_params& params,
                                     const options& opts) {
  constexpr const char* fn = "attention_weights";
  ATTNPOOL_EXPECTS(d >= 1, fn, ": d must be >= 1, got ", d);
  ATTNPOOL_EXPECTS(queries.size() % d == 0 && keys.size() % d == 0, fn,
                   ": queries.size() and keys.size() must be multiples of d (", d, "), got ",
                   queries.size(), " and ", keys.size());
  const std::size_t n = queries.size() / d, m = keys.size() / d;
  const float shape_only = 0.0f;
  detail::check_weights_args(fn, const_view{queries.data(), n, d}, const_view{keys.data(), m, d},
                             const_view{&shape_only, n, m, m}, params, detail::mask_support::host);
  std::vector<float> w(n * m);
  attention_weights(const_view{queries.data(), n, d}, const_view{keys.data(), m, d},
                    mutable_view{w.data(), n, m}, params, opts);
  return w;
}

}  // namespace attnpool
