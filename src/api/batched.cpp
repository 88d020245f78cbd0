// pool_batched, pool_partial and merge_partials: validate once, then hand over to the
// CPU engine (src/cpu/engine.cpp, the same per-row code as pool()), the reference, or the CUDA
// fused path's host-memory entry points (src/cuda/batched.cpp).
#include <attnpool/batched.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>

#include "src/cpu/engine.hpp"
#include "src/cuda/backends.hpp"
#include "src/reference/engine.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

namespace attnpool {

void pool_batched(const_view q, const_view k, const_view v, mutable_view out,
                  std::span<const std::size_t> query_offsets,
                  std::span<const std::size_t> key_offsets, const pool_params& params,
                  const options& opts) {
  constexpr const char* fn = "pool_batched";
  const backend b = detail::choose_backend({fn, detail::entry_point::batched, opts.backend});
  detail::reject_shard_mask(fn, params);
  detail::check_batch_offsets(fn, query_offsets, key_offsets, q.rows, k.rows);
  const std::size_t problems = query_offsets.size() - 1;
  if (q.rows == 0) return;  // then keys.rows may be 0 as well; nothing to check or compute
  detail::check_pool_args(fn, q, k, v, out, params, detail::mask_support::host);
  detail::choose_backend({fn, detail::entry_point::batched, b, q.cols, &params});
  detail::check_inputs_host(fn, opts, q, k, v, params);
  if (b == backend::cuda_fused)
    return detail::cuda_pool_batched_host(q, k, v, out, query_offsets, key_offsets, params);
  if (b == backend::cpu)
    return detail::cpu_pool_batched(q, k, v, out, query_offsets, key_offsets, params,
                                    opts.threads);
  for (std::size_t p = 0; p < problems; ++p) {
    const std::size_t q0 = query_offsets[p], q1 = query_offsets[p + 1];
    if (q0 == q1) continue;
    const std::size_t k0 = key_offsets[p], k1 = key_offsets[p + 1];
    detail::reference_pool(detail::rows_of(q, q0, q1), detail::rows_of(k, k0, k1),
                           detail::rows_of(v, k0, k1), detail::rows_of(out, q0, q1), params);
  }
}

partial_states pool_partial(const_view q, const_view k, const_view v, const pool_params& params,
                            const options& opts) {
  constexpr const char* fn = "pool_partial";
  const backend b = detail::choose_backend({fn, detail::entry_point::partial, opts.backend});
  detail::reject_shard_mask(fn, params);
  detail::reject_shard_nearest(fn, params);
  partial_states st;
  st.n = q.rows;
  st.dv = v.cols;
  st.acc.assign(detail::checked_mul(fn, "n * dv", st.n, st.dv), 0.0f);
  const mutable_view acc{st.acc.data(), st.n, st.dv};
  detail::check_pool_args(fn, q, k, v, acc, params, detail::mask_support::host);
  detail::choose_backend({fn, detail::entry_point::partial, b, q.cols, &params});
  detail::check_inputs_host(fn, opts, q, k, v, params);
  st.max.assign(st.n, -std::numeric_limits<float>::infinity());
  st.sum.assign(st.n, 0.0f);
  const mutable_partials out = st.view();
  if (b == backend::cuda_fused) {
    if (st.n > 0) detail::cuda_pool_partial_host(q, k, v, out, params);
    return st;
  }
  detail::cpu_pool_partial(q, k, v, out, params, opts.threads);
  return st;
}

void merge_partials(std::span<const partial_states> shards, mutable_view out,
                    const pool_params& params) {
  constexpr const char* fn = "merge_partials";
  ATTNPOOL_EXPECTS(!shards.empty(), fn, ": shards must hold at least one partial_states");
  const std::size_t n = shards[0].n, dv = shards[0].dv;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const partial_states& p = shards[s];
    ATTNPOOL_EXPECTS(p.n == n && p.dv == dv, fn, ": shard ", s, " is ", p.n, " x ", p.dv,
                     " but shard 0 is ", n, " x ", dv, "; every shard must cover the same ",
                     "queries with the same dv");
    ATTNPOOL_EXPECTS(p.max.size() == n && p.sum.size() == n && p.acc.size() == n * dv, fn,
                     ": shard ", s, " has max/sum/acc sizes ", p.max.size(), "/", p.sum.size(),
                     "/", p.acc.size(), ", expected ", n, "/", n, "/", n * dv);
  }
  ATTNPOOL_EXPECTS(out.rows == n && out.cols == dv, fn, ": out must be ", n, " x ", dv, ", got ",
                   out.rows, " x ", out.cols);
  ATTNPOOL_EXPECTS(out.ld >= out.cols, fn, ": out.ld must be >= out.cols (", out.cols, "), got ",
                   out.ld);
  ATTNPOOL_EXPECTS(out.data != nullptr || n == 0, fn, ": out.data is null but out is ", n, " x ",
                   dv);
  // Check for empty rows first, so that out is untouched when the call throws.
  if (params.empty == empty_support::error) {
    for (std::size_t i = 0; i < n; ++i) {
      bool seen = false;
      for (const partial_states& p : shards)
        seen |= p.max[i] != -std::numeric_limits<float>::infinity();
      if (!seen) detail::throw_empty_row(fn, params, i, {.any_shard = true, .nearest_ok = false});
    }
  }
  std::vector<float> acc(dv);
  for (std::size_t i = 0; i < n; ++i) {
    detail::online_softmax sm;
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (const partial_states& p : shards) {
      const detail::rescale r = sm.merge(detail::online_softmax{p.max[i], p.sum[i]});
      const float* pa = p.acc.data() + i * dv;
      for (std::size_t c = 0; c < dv; ++c) acc[c] = acc[c] * r.self + r.other * pa[c];
    }
    if (sm.empty()) {
      for (std::size_t c = 0; c < dv; ++c) out(i, c) = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float inv = sm.inv_sum();
    for (std::size_t c = 0; c < dv; ++c) out(i, c) = acc[c] * inv;
  }
}

}  // namespace attnpool
