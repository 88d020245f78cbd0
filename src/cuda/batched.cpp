// Batched problems and sharded keys on the fused path: the device-pointer API of
// attnpool/cuda.hpp (pool_batched, pool_partial, merge_partials) and the host-memory entry
// points that src/api/batched.cpp calls for backend cuda_fused.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>

#include "src/cuda/backends.hpp"
#include "src/cuda/host.hpp"
#include "kernels/common/cuda_check.hpp"
#include "kernels/common/workspace.hpp"
#include "kernels/fused/dispatch.hpp"
#include "kernels/merge/states.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace attnpool {
namespace cuda::detail {
namespace {

using kernels::align_up;
namespace core = ::attnpool::detail;

// pool_batched's workspace: [scan slot][block table of max_batch_blocks entries].
std::size_t batched_table_bytes(const char* fn, std::size_t problems, std::size_t total_queries,
                                std::size_t d, std::size_t dv, const pool_params& params) {
  const std::size_t rpb = kernels::fused_rows_per_block(d, dv, uses_generic_score(params));
  const std::size_t entries = kernels::max_batch_blocks(problems, total_queries, rpb);
  return align_up(
      core::checked_mul(fn, "batch block table", entries, sizeof(kernels::fused_block)));
}

// pool_partial's workspace: [scan slot][splits x n x {max, sum}][splits x n x dv acc].
struct partial_layout {
  kernels::fused_plan plan;
  std::size_t state_offset = 0, acc_offset = 0, total = 0;
};

partial_layout partial_layout_for(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                  const pool_params& params) {
  constexpr const char* fn = "cuda::pool_partial_workspace_size";
  partial_layout l;
  l.plan = kernels::plan_fused(n, m, d, dv, current_sm_count(), 0, uses_generic_score(params));
  const auto s = static_cast<std::size_t>(l.plan.splits);
  l.state_offset = kScanBytes;
  l.acc_offset = l.state_offset +
                 align_up(core::checked_mul(fn, "key-range states", s * 2 * sizeof(float), n));
  l.total =
      l.acc_offset + align_up(core::checked_mul(fn, "key-range accumulators", s * sizeof(float),
                                                core::checked_mul(fn, "n * dv", n, dv)));
  return l;
}

}  // namespace
}  // namespace cuda::detail

// ---- device-pointer API -------------------------------------------------------------------------

std::size_t cuda::pool_batched_workspace_size(std::size_t problems, std::size_t total_queries,
                                              std::size_t d, std::size_t dv,
                                              const pool_params& params) {
  if (total_queries == 0 || d == 0 || dv == 0) return detail::kScanBytes;
  return detail::kScanBytes + detail::batched_table_bytes("cuda::pool_batched_workspace_size",
                                                          problems, total_queries, d, dv, params);
}

void cuda::pool_batched(const_view q, const_view k, const_view v, mutable_view out,
                        std::span<const std::size_t> query_offsets,
                        std::span<const std::size_t> key_offsets, const pool_params& params,
                        const options& opts) {
  constexpr const char* fn = "cuda::pool_batched";
  ::attnpool::detail::choose_backend(
      {fn, ::attnpool::detail::entry_point::device_fused, opts.backend});
  ::attnpool::detail::reject_shard_mask(fn, params);
  ::attnpool::detail::check_batch_offsets(fn, query_offsets, key_offsets, q.rows, k.rows);
  if (q.rows == 0) return;  // keys.rows may be 0 too; nothing to check or compute
  const auto s = ::attnpool::detail::check_pool_args(fn, q, k, v, out, params);
  ::attnpool::detail::check_int_dims(fn, s.d, s.dv);
  const std::size_t problems = query_offsets.size() - 1;
  const bool generic = detail::uses_generic_score(params);
  const std::vector<kernels::fused_block> blocks = kernels::plan_batch_blocks(
      query_offsets, key_offsets, kernels::fused_rows_per_block(s.d, s.dv, generic));
  const std::size_t table_bytes = detail::batched_table_bytes(fn, problems, s.n, s.d, s.dv, params);
  detail::check_workspace(fn, opts, detail::kScanBytes + table_bytes);
  // The bound of max_batch_blocks holds by construction; a table that outgrew it would write
  // past the workspace.
  ATTNPOOL_EXPECTS(blocks.size() * sizeof(kernels::fused_block) <= table_bytes, fn,
                   ": internal error: ", blocks.size(), " batch blocks exceed the workspace bound");
  if (opts.check_finite) {
    std::size_t most_keys = 0;  // a row sums over its own problem's keys only
    for (std::size_t b = 0; b < problems; ++b)
      most_keys = std::max(most_keys, key_offsets[b + 1] - key_offsets[b]);
    detail::check_inputs_on_device(fn, q, k, v, params, most_keys, detail::ws_at(opts, 0),
                                   opts.stream);
  }

  auto* table = reinterpret_cast<kernels::fused_block*>(detail::ws_at(opts, detail::kScanBytes));
  // From pageable host memory: the call returns once `blocks` has been staged, so the vector
  // may go out of scope while the copy is still in flight.
  ATTNPOOL_CUDA_TRY(cudaMemcpyAsync(table, blocks.data(), blocks.size() * sizeof blocks[0],
                                    cudaMemcpyHostToDevice, opts.stream));
  kernels::generic_score_args generic_args;
  kernels::fused_args a = detail::fused_args_for(q, k, v, out, params, generic_args);
  a.batch_blocks = table;
  const kernels::fused_plan plan = kernels::plan_fused_batched(blocks.size(), s.d, s.dv, generic);
  kernels::launch_fused(a, plan, opts.stream, generic ? &generic_args : nullptr);

  if (detail::needs_empty_check(params)) {
    const unsigned long long bad =
        detail::first_nonfinite_on_device(out, detail::ws_at(opts, 0), opts.stream);
    if (bad != ~0ULL)
      ::attnpool::detail::throw_empty_row(fn, params, static_cast<std::size_t>(bad / out.cols),
                                          {.query_offsets = query_offsets, .nearest_ok = false});
  }
}

std::size_t cuda::pool_partial_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                              std::size_t dv, const pool_params& params) {
  if (n == 0 || m == 0 || d == 0 || dv == 0) return detail::kScanBytes;
  return detail::partial_layout_for(n, m, d, dv, params).total;
}

void cuda::pool_partial(const_view q, const_view k, const_view v, const partial_view& out,
                        const pool_params& params, const options& opts) {
  constexpr const char* fn = "cuda::pool_partial";
  ::attnpool::detail::choose_backend(
      {fn, ::attnpool::detail::entry_point::device_fused, opts.backend});
  ::attnpool::detail::reject_shard_mask(fn, params);
  ::attnpool::detail::reject_shard_nearest(fn, params);
  const auto s = ::attnpool::detail::check_pool_args(fn, q, k, v, out.acc, params);
  ::attnpool::detail::check_int_dims(fn, s.d, s.dv);
  if (s.n == 0) return;
  ATTNPOOL_EXPECTS(out.max != nullptr && out.sum != nullptr, fn, ": out.max and out.sum must ",
                   "point to n = ", s.n, " floats each, got ", out.max, " and ", out.sum);
  ATTNPOOL_EXPECTS(out.state_step >= 1, fn, ": out.state_step must be >= 1, got ", out.state_step);
  const detail::partial_layout l = detail::partial_layout_for(s.n, s.m, s.d, s.dv, params);
  detail::check_workspace(fn, opts, l.total);
  if (opts.check_finite)
    detail::check_inputs_on_device(fn, q, k, v, params, s.m, detail::ws_at(opts, 0), opts.stream);
  kernels::generic_score_args generic_args;
  kernels::fused_args a = detail::fused_args_for(q, k, v, out.acc, params, generic_args);
  a.partial_state = reinterpret_cast<float*>(detail::ws_at(opts, l.state_offset));
  a.partial_acc = reinterpret_cast<float*>(detail::ws_at(opts, l.acc_offset));
  kernels::launch_fused_partial(a, l.plan, opts.stream,
                                detail::uses_generic_score(params) ? &generic_args : nullptr, out);
}

std::size_t cuda::merge_partials_workspace_size(const pool_params&) {
  return detail::kScanBytes;
}

void cuda::merge_partials(const stacked_partials& in, mutable_view out, const pool_params& params,
                          const options& opts) {
  constexpr const char* fn = "cuda::merge_partials";
  ::attnpool::detail::reject_shard_nearest(fn, params);
  if (!::attnpool::detail::check_stacked_partials(fn, in, out)) return;
  const std::size_t dv = in.acc.cols;
  detail::check_workspace(fn, opts, detail::needs_empty_check(params) ? detail::kScanBytes : 0);
  kernels::merge_target dst;
  dst.out = out.data;
  dst.ldo = out.ld;
  kernels::launch_merge_states(in, dst, opts.stream);
  if (detail::needs_empty_check(params)) {
    const unsigned long long bad =
        detail::first_nonfinite_on_device(out, detail::ws_at(opts, 0), opts.stream);
    if (bad != ~0ULL)
      ::attnpool::detail::throw_empty_row(fn, params, static_cast<std::size_t>(bad / dv),
                                          {.any_shard = true, .nearest_ok = false});
  }
}

// ---- host-memory entry points (src/cuda/backends.hpp) -------------------------------------------

void detail::cuda_pool_batched_host(const_view q, const_view k, const_view v, mutable_view out,
                                    std::span<const std::size_t> query_offsets,
                                    std::span<const std::size_t> key_offsets,
                                    const pool_params& params) {
  using cuda::detail::device_buffer;
  const stream_t stream = cuda::detail::kHostStream;
  const cuda::detail::device_inputs in(q, k, v, stream);
  device_buffer<float> dout(out.rows * out.cols, "output");
  const device_buffer<std::byte> ws(
      cuda::pool_batched_workspace_size(query_offsets.size() - 1, q.rows, q.cols, v.cols, params),
      "pool_batched's workspace");
  const options o = cuda::detail::host_call_options(backend::cuda_fused, stream, &ws);
  cuda::pool_batched(in.q, in.k, in.v, mutable_view{dout.data(), out.rows, out.cols}, query_offsets,
                     key_offsets, params, o);
  cuda::detail::download(dout.data(), out, stream);
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
}

void detail::cuda_pool_partial_host(const_view q, const_view k, const_view v,
                                    const mutable_partials& st, const pool_params& params) {
  using cuda::detail::device_buffer;
  const stream_t stream = cuda::detail::kHostStream;
  const std::size_t n = q.rows, dv = v.cols;
  const cuda::detail::device_inputs in(q, k, v, stream);
  device_buffer<float> packed(cuda::packed_partial_floats(n, dv), "the partial states");
  const device_buffer<std::byte> ws(
      cuda::pool_partial_workspace_size(n, k.rows, q.cols, dv, params), "pool_partial's workspace");
  const options o = cuda::detail::host_call_options(backend::cuda_fused, stream, &ws);
  const cuda::partial_view pv = cuda::packed_partial(packed.data(), n, dv);
  cuda::pool_partial(in.q, in.k, in.v, pv, params, o);
  ATTNPOOL_CUDA_TRY(
      cudaMemcpyAsync(st.max, pv.max, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
  ATTNPOOL_CUDA_TRY(
      cudaMemcpyAsync(st.sum, pv.sum, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
  cuda::detail::download(pv.acc.data, st.acc, stream);
  ATTNPOOL_CUDA_TRY(cudaStreamSynchronize(stream));
}

}  // namespace attnpool
