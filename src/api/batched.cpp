// pool_batched, pool_partial and merge_partials: validate once, then hand over to the
// CPU engine (src/cpu/engine.cpp, the same per-row code as pool()), the reference, or the CUDA
// fused path's host-memory entry points (src/cuda/batched.cpp).
#include <attnpool/batched.hpp>
#include <attnpool/detail/merge_states.hpp>
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>

#include "src/api/guarded_output.hpp"
#include "src/cpu/engine.hpp"
#include "src/cuda/backends.hpp"
#include "src/reference/engine.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>
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
  if (b == backend::cuda_fused) detail::reject_shard_mask(fn, params);
  detail::check_batch_offsets(fn, query_offsets, key_offsets, q.rows, k.rows);
  const std::size_t problems = query_offsets.size() - 1;
  if (q.rows == 0) return;  // then keys.rows may be 0 as well; nothing to check or compute
  // The mask is checked per problem: leave_one_out holds within each, not over the batch.
  detail::check_pool_args(fn, q, k, v, out, detail::without_mask(params),
                          detail::mask_support::host);
  detail::check_batch_mask(fn, params, query_offsets, key_offsets);
  detail::check_disjoint(fn, "out", out, "queries", q);
  detail::check_disjoint(fn, "out", out, "keys", k);
  detail::check_disjoint(fn, "out", out, "values", v);
  detail::choose_backend({fn, detail::entry_point::batched, b, q.cols, &params});
  detail::check_inputs_host(fn, opts, q, k, v, params);
  std::size_t terms = 0;  // the most keys of any problem
  for (std::size_t p = 0; p < problems; ++p)
    terms = std::max(terms, key_offsets[p + 1] - key_offsets[p]);
  const bool host = b != backend::cuda_fused;
  const detail::guarded_output g(
      v, terms, out, host && is_compact(params.kernel) && params.empty == empty_support::error);
  const const_view gv = g.values();
  const mutable_view gout = g.out();
  if (b == backend::cuda_fused) {
    detail::cuda_pool_batched_host(q, k, gv, gout, query_offsets, key_offsets, params);
  } else if (b == backend::cpu) {
    detail::cpu_pool_batched(q, k, gv, gout, query_offsets, key_offsets, params, opts.threads);
  } else {
    pool_params one = params;  // problem p's valid_lens: its rows' counts
    for (std::size_t p = 0; p < problems; ++p) {
      const std::size_t q0 = query_offsets[p], q1 = query_offsets[p + 1];
      if (q0 == q1) continue;
      const std::size_t k0 = key_offsets[p], k1 = key_offsets[p + 1];
      if (params.mask == mask::valid_length)
        one.valid_lens = params.valid_lens.subspan(q0, q1 - q0);
      detail::reference_pool(detail::rows_of(q, q0, q1), detail::rows_of(k, k0, k1),
                             detail::rows_of(gv, k0, k1), detail::rows_of(gout, q0, q1), one);
    }
  }
  g.commit();
}

namespace {

// Row i of a partial state whose values were divided by 2^shift[c]: acc row i times 2^shift[c],
// in double. Where that exceeds float32, the row's reference moves up by delta log2 units
// (sum and acc times 2^-delta): the same state for every merge, since a merge is exact for any
// reference. A shift that float32 cannot represent against the row's reference is an error.
void unscale_partial_row(const char* fn, partial_states& st, std::size_t i,
                         const std::vector<int>& shift) {
  const std::size_t dv = st.dv;
  float* acc = st.acc.data() + i * dv;
  double amax = 0.0;
  for (std::size_t c = 0; c < dv; ++c)
    amax = std::max(amax, std::fabs(std::ldexp(static_cast<double>(acc[c]), shift[c])));
  const double limit = std::numeric_limits<float>::max() / 2.0;
  double delta = 0.0;
  if (amax > limit) {
    const double want = std::ceil(std::log2(amax / limit));
    auto moved = static_cast<float>(static_cast<double>(st.max[i]) + want);
    if (static_cast<double>(moved) - st.max[i] < want)
      moved = std::nextafter(moved, std::numeric_limits<float>::infinity());
    delta = static_cast<double>(moved) - static_cast<double>(st.max[i]);
    const auto sum = static_cast<float>(std::exp2(-delta) * st.sum[i]);
    if (!(sum > 0.0f) || !std::isfinite(moved))
      throw error(detail::concat(fn, ": the accumulator of query row ", i, " (", amax,
                                 ") exceeds float32 and cannot be moved to another reference at",
                                 " max = ", st.max[i], "; scale the values down"));
    st.max[i] = moved;
    st.sum[i] = sum;
  }
  for (std::size_t c = 0; c < dv; ++c)
    acc[c] = static_cast<float>(std::ldexp(static_cast<double>(acc[c]), shift[c]) *
                                std::exp2(-delta));
}

}  // namespace

partial_states pool_partial(const_view q, const_view k, const_view v, const pool_params& params,
                            const options& opts, std::size_t key_offset) {
  constexpr const char* fn = "pool_partial";
  const backend b = detail::choose_backend({fn, detail::entry_point::partial, opts.backend});
  if (b == backend::cuda_fused) detail::reject_shard_mask(fn, params);
  detail::reject_shard_nearest(fn, params);
  // Validated against a shape-only view before the states are allocated; never dereferenced.
  const float shape_only = 0.0f;
  detail::check_pool_args(fn, q, k, v, const_view{&shape_only, q.rows, v.cols, v.cols},
                          detail::without_mask(params), detail::mask_support::host);
  detail::check_shard_mask(fn, params, q.rows, k.rows);
  detail::choose_backend({fn, detail::entry_point::partial, b, q.cols, &params});
  detail::check_inputs_host(fn, opts, q, k, v, params);
  partial_states st;
  st.n = q.rows;
  st.dv = v.cols;
  st.acc.assign(st.n * st.dv, 0.0f);
  st.max.assign(st.n, -std::numeric_limits<float>::infinity());
  st.sum.assign(st.n, 0.0f);
  if (st.n == 0) return st;
  const std::vector<int> shift = detail::overflow_shifts(v, k.rows);
  const std::vector<float> scaled = shift.empty() ? std::vector<float>{}
                                                  : detail::scaled_copy(v, shift);
  const const_view gv = shift.empty() ? v : const_view{scaled.data(), v.rows, v.cols};
  const mutable_partials out = st.view();
  if (b == backend::cuda_fused) {
    detail::cuda_pool_partial_host(q, k, gv, out, params);
  } else {
    detail::cpu_pool_partial(q, k, gv, out, params, key_offset, opts.threads);
  }
  if (!shift.empty())
    for (std::size_t i = 0; i < st.n; ++i) unscale_partial_row(fn, st, i, shift);
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
  detail::check_view(fn, "out", out);
  for (const partial_states& p : shards) {
    detail::check_disjoint(fn, "out", out, "a shard's acc", p.accumulators());
    detail::check_disjoint(fn, "out", out, "a shard's max", const_view{p.max.data(), 1, n});
    detail::check_disjoint(fn, "out", out, "a shard's sum", const_view{p.sum.data(), 1, n});
  }
  // Check for empty rows first, so that out is untouched when the call throws.
  if (params.empty == empty_support::error) {
    for (std::size_t i = 0; i < n; ++i) {
      bool seen = false;
      for (const partial_states& p : shards)
        seen |= p.max[i] != -std::numeric_limits<float>::infinity();
      if (!seen) detail::throw_empty_row(fn, params, i, {.any_shard = true, .nearest_ok = false});
    }
  }
  detail::merge_states(
      shards.size(),
      [&](std::size_t s, std::size_t i) {
        const partial_states& p = shards[s];
        return detail::shard_row{p.max[i], p.sum[i], p.acc.data() + i * dv};
      },
      out);
}

}  // namespace attnpool
