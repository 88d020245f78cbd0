// The CPU engine behind the public entry points' backend::cpu. Arguments arrive validated.
#pragma once

#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace attnpool::detail {

void cpu_pool(const_view q, const_view k, const_view v, mutable_view out, const pool_params& params,
              unsigned threads);
// B problems in one call (pool_batched): problem b is query rows [query_offsets[b],
// query_offsets[b + 1]) against key rows [key_offsets[b], key_offsets[b + 1]). Masks apply per
// problem (valid_lens holds one count per row of the batch; leave_one_out within a problem).
void cpu_pool_batched(const_view q, const_view k, const_view v, mutable_view out,
                      std::span<const std::size_t> query_offsets,
                      std::span<const std::size_t> key_offsets, const pool_params& params,
                      unsigned threads);
// The unnormalised streaming state of every row over the keys given (pool_partial), into one
// shard of `out` (host memory): max and sum of the row's online softmax, acc row i its dv
// accumulators. valid_lens counts the shard's keys a row sees; leave_one_out skips the shard's
// key i - key_offset. A row with no visible key (or, for a compact kernel, none in the support)
// gets the empty state (max -inf, sum 0, acc 0).
void cpu_pool_partial(const_view q, const_view k, const_view v, const mutable_partials& out,
                      const pool_params& params, std::size_t key_offset, unsigned threads);
void cpu_weights(const_view q, const_view k, mutable_view w, const pool_params& params,
                 unsigned threads);
// How many of q's rows cpu_pool would score in the dot-product form against keys k (the rest take
// the direct form): for the tests that hold the form choice to its bound, and for benchmarks.
std::size_t cpu_dot_form_rows(const_view q, const_view k, const pool_params& params);
// How many take the scaled direct form at d = 1 (src/cpu/engine.cpp, beside kDotFormMaxError).
std::size_t cpu_scaled_form_rows(const_view q, const_view k, const pool_params& params);
// The ISA clone of the engine's multiversioned loops that the loader picks on this CPU:
// "x86-64-v4" (AVX-512), "x86-64-v3" (AVX2 + FMA), "default" (baseline x86-64), or "none" where
// the build does not clone (another compiler or architecture, ATTNPOOL_NO_MULTIVERSIONING).
const char* cpu_engine_clone();
// pool_backward on backend::cpu (src/cpu/backward.cpp): the fused two-phase backward.
void cpu_backward(const_view q, const_view k, const_view v, const_view dout,
                  const pool_gradients& grads, const pool_params& params, unsigned threads);
// loo_cv_error on backend::cpu (src/cpu/bandwidth.cpp): the fused leave-one-out sweep.
std::vector<double> cpu_loo_cv(const_view x, const_view y, std::span<const double> hs,
                               unsigned threads);

}  // namespace attnpool::detail
