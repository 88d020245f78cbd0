/// \file
/// The device-pointer API. Every pointer here is CUDA device memory. Calls enqueue work on
/// opts.stream and return without synchronising; they allocate nothing: scratch memory comes
/// from opts.workspace, sized by the matching *_workspace_size query. In a build without CUDA
/// every function throws cuda_error ("attnpool was built without CUDA").
///
/// Validation that needs the data itself (opts.check_finite) runs on the device and reports
/// through a flag in the workspace, which costs one synchronisation of opts.stream; switch it
/// off for a fully asynchronous call.
///
/// Unlike the host entry points, these do not scale values near float32's range: m * max|v|
/// must stay below FLT_MAX / 2^18 (about 1.3e33; m is the keys a row sums over). With
/// opts.check_finite the device scan measures max|v| and refuses larger values with
/// invalid_argument; without it such values may overflow an output to inf.
///
/// pool() takes masks on cuda_fused, and pool_backward() is the fused backward pass;
/// the unfused path and attention_weights() refuse masks ("not implemented on the GPU yet").
///
/// The workspace must start on a 256-byte boundary (cudaMalloc's pointers do). The workspace
/// queries read the current device's multiprocessor count (split-K sizing depends on it), so
/// they throw cuda_error where no device is usable. The unfused path keeps one cuBLAS handle per
/// host thread and device, created (and allocating its own memory) on first use.
#pragma once

#include <attnpool/learn.hpp>
#include <attnpool/types.hpp>

#include <cstddef>
#include <span>

namespace attnpool::cuda {

/// Bytes of device workspace that pool() needs for this problem and backend (may be 0).
std::size_t pool_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                const pool_params& params, backend which);

/// Attention pooling on device pointers (see attnpool::pool for the maths and the throws).
/// Backend must be cuda_fused, cuda_unfused or automatic (= cuda_fused). Masks
/// (params.mask) on cuda_fused only; params.valid_lens stays HOST memory: it is copied into the
/// workspace on opts.stream (from pageable memory, such as a std::vector's, the copy is staged
/// before this call returns and the span may be released then; from pinned memory keep it alive
/// until the stream has passed the call).
void pool(const_view queries, const_view keys, const_view values, mutable_view out,
          const pool_params& params, const options& opts);

/// Bytes of device workspace that pool_backward() needs: a few floats per query row, plus a
/// copy of params.valid_lens with mask::valid_length, plus, with the experimental tiled kernels
/// (ATTNPOOL_CUDA_TILED_BACKWARD=1), their partial sums (at most 256 MiB; sized from the current
/// device's multiprocessor count). Throws as pool_workspace_size().
std::size_t pool_backward_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                         std::size_t dv, const pool_params& params);

/// The backward pass of pool() on device pointers (see attnpool::pool_backward for the maths):
/// the gradients with respect to the queries, keys, values and bandwidth, with the n x m matrix
/// never stored and every gradient summed in a fixed order (bitwise repeatable). Gaussian
/// kernel, isotropic bandwidth, d <= kMaxGpuBackwardDims.
/// Backend must be cuda_fused or automatic.
/// \param grads device views of the gradients wanted (any subset); grads.bandwidth, when set,
///        points to ONE DOUBLE IN DEVICE MEMORY, written asynchronously.
/// \param params masks as for pool(); params.valid_lens stays HOST memory: it is copied into the
///        workspace on opts.stream (from pageable memory, such as a std::vector's, the copy
///        is staged before this call returns and the span may be released then; from pinned
///        memory keep it alive until the stream has passed the call).
/// Asynchronous on opts.stream unless opts.check_finite (the device scan of q, k, v and dout
/// synchronises once).
/// \throws invalid_argument as attnpool::pool_backward does, for d > 64, a non-Gaussian kernel
///         or an anisotropic bandwidth, or a workspace too small; cuda_error on CUDA failures.
void pool_backward(const_view queries, const_view keys, const_view values, const_view dout,
                   const pool_gradients& grads, const pool_params& params, const options& opts);

/// Bytes of device workspace that attention_weights() needs (may be 0).
std::size_t attention_weights_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                             const pool_params& params);

/// The n x m weight matrix on device pointers, through the unfused (cuBLAS) path.
void attention_weights(const_view queries, const_view keys, mutable_view weights,
                       const pool_params& params, const options& opts);

/// Mean of the value rows broadcast to out's rows, on device pointers (Thrust reduction).
void average_pool(const_view values, mutable_view out, const options& opts);

// ---- batched problems and sharded keys (see attnpool/batched.hpp for the maths) -----

/// Bytes of device workspace that pool_batched() needs for `problems` problems holding
/// `total_queries` query rows in all (an upper bound that needs only the totals: the batch's
/// block table, plus the check_finite scan slot).
std::size_t pool_batched_workspace_size(std::size_t problems, std::size_t total_queries,
                                        std::size_t d, std::size_t dv,
                                        const pool_params& params = {});

/// attnpool::pool_batched on device pointers, in one fused kernel launch: each problem's queries
/// see only that problem's keys. queries / keys / values / out are device memory; query_offsets
/// and key_offsets (B + 1 each) are host memory, read before the call returns (a table built
/// from them is copied into opts.workspace, asynchronously on opts.stream).
/// Backend must be cuda_fused or automatic. params.mask must be none (masks are not supported
/// in batches yet); every kernel and anisotropic bandwidths are. Each problem's result equals
/// a separate cuda::pool call on it without split-K (same per-row code, same key order).
/// \throws invalid_argument as attnpool::pool_batched does (offsets, shapes, the bandwidth,
///         non-finite inputs with opts.check_finite, which synchronises), and for a compact
///         kernel's empty row under empty_support::error (this synchronises too), naming the
///         problem and its row.
void pool_batched(const_view queries, const_view keys, const_view values, mutable_view out,
                  std::span<const std::size_t> query_offsets,
                  std::span<const std::size_t> key_offsets, const pool_params& params,
                  const options& opts);

/// One shard's partial softmax states in device memory (attnpool::partials_view, types.hpp):
/// max[i] and sum[i] at max[i * state_step] and sum[i * state_step], and the unnormalised
/// accumulators acc (n x dv, any leading dimension). Same meaning as attnpool::partial_states.
using partial_view = mutable_partials;

/// S shards' partial states in device memory, stacked (attnpool::partials_view, types.hpp):
/// shard s's max[i] is at max[s * state_stride + i * state_step], its sum[i] at
/// sum[s * state_stride + i * state_step], and its acc row i at acc.data + s * acc_stride +
/// i * acc.ld; acc.rows = n and acc.cols = dv describe one shard.
using stacked_partials = const_partials;

/// Floats of one shard in the packed layout [max: n][sum: n][acc: n x dv, ld = dv]: the n x
/// (dv + 2) floats per shard that the multi-GPU and NCCL paths move (docs/scaling.md).
constexpr std::size_t packed_partial_floats(std::size_t n, std::size_t dv) noexcept {
  return n * (dv + 2);
}
/// One shard's partial_view over a packed buffer of packed_partial_floats(n, dv) floats.
constexpr partial_view packed_partial(float* shard, std::size_t n, std::size_t dv) noexcept {
  return {shard, shard + n, mutable_view{shard + 2 * n, n, dv, dv}};
}
/// S packed shards back to back (what an all-gather of packed_partial buffers produces).
constexpr stacked_partials packed_partials(const float* buffer, std::size_t shards, std::size_t n,
                                           std::size_t dv) noexcept {
  return {buffer,
          buffer + n,
          const_view{buffer + 2 * n, n, dv, dv},
          shards,
          packed_partial_floats(n, dv),
          packed_partial_floats(n, dv),
          1};
}

/// Bytes of device workspace that pool_partial() needs (never 0: the key ranges' states).
std::size_t pool_partial_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                        const pool_params& params = {});

/// attnpool::pool_partial on device pointers: the partial states of `queries` over one shard of
/// the keys (keys_shard, values_shard), written to `out` (one shard: out.acc must be n x dv,
/// out.state_step >= 1; out.shards and the shard strides are not read). Runs the fused
/// kernel (split-K inside the shard where the queries alone cannot fill the GPU) and merges its
/// key ranges in a fixed order. Asynchronous unless opts.check_finite. A row with no key inside a compact
/// kernel's support gets the empty state (max = -inf, sum = 0, acc = 0), never an error.
/// \throws invalid_argument as attnpool::pool_partial does (params.mask must be none;
///         empty_support::nearest is refused for compact kernels).
void pool_partial(const_view queries, const_view keys_shard, const_view values_shard,
                  const partial_view& out, const pool_params& params, const options& opts);

/// Bytes of device workspace that merge_partials() needs (the empty-row scan slot).
std::size_t merge_partials_workspace_size(const pool_params& params = {});

/// attnpool::merge_partials on the device: merges the shards' states in one fixed order, so the
/// result is bitwise deterministic (though not bitwise the CPU's merge_partials, which merges
/// shard 0, 1, ..., S-1 in turn), and writes the normalised n x dv result to `out`. Only
/// params.kernel and params.empty are read; a row that no shard saw a key for is NaN
/// (empty_support::nan) or an invalid_argument naming the row (empty_support::error, which
/// synchronises opts.stream). Otherwise asynchronous.
/// \throws invalid_argument for shards == 0, state_step == 0, a shape mismatch, null pointers
///         or strides that make shards overlap.
void merge_partials(const stacked_partials& shards, mutable_view out, const pool_params& params,
                    const options& opts);

/// Number of usable CUDA devices (0 without CUDA or without a device). Never throws.
int device_count() noexcept;

}  // namespace attnpool::cuda
