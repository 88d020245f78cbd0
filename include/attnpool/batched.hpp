/// \file
/// Many small problems in one call, and keys sharded into pieces whose partial softmax states
/// are merged exactly.
///
/// Host memory. pool_batched runs on the reference, the CPU engine and cuda_fused (one kernel
/// launch for the whole batch); pool_partial on the CPU engine and cuda_fused. The device-pointer
/// versions are in attnpool/cuda.hpp, the multi-GPU driver in attnpool/multi_gpu.hpp and the NCCL
/// exchange in attnpool/nccl.hpp.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>
#include <span>
#include <vector>

namespace attnpool {

/// B independent attention-pooling problems in one call, in the variable-length style: the
/// queries, keys and values of every problem are concatenated row-wise (d and dv are shared),
/// and problem b is
///
///   query rows [query_offsets[b], query_offsets[b + 1]) against
///   key / value rows [key_offsets[b], key_offsets[b + 1]),
///
/// writing out rows [query_offsets[b], query_offsets[b + 1]). Each problem's result is what
/// pool() computes for it alone (the CPU engine runs the same per-row code and key order, so
/// the results are bitwise those of separate pool() calls, for any thread count); the call
/// spreads the rows of all problems over the threads at once, which is what makes many tiny
/// problems cheap.
///
/// \param queries        sum_b n_b x d
/// \param keys           sum_b m_b x d
/// \param values         sum_b m_b x dv
/// \param out            sum_b n_b x dv; written only if every check passes; it must neither
///                       overlap nor alias an input
/// \param query_offsets  B + 1 row offsets: 0 first, non-decreasing, queries.rows last
/// \param key_offsets    B + 1 row offsets: 0 first, non-decreasing, keys.rows last
/// \param params         as for pool(), each mask applied within each problem:
///                       mask::valid_length takes one count per query row of the whole batch
///                       (params.valid_lens, sum_b n_b entries), each in [1, m_b] of the row's
///                       own problem (query row i of problem b sees that problem's keys
///                       [0, valid_lens[query_offsets[b] + i])); mask::leave_one_out needs
///                       n_b == m_b in every problem (m_b >= 2 where n_b > 0): query i of
///                       problem b skips key i of problem b. The host backends only.
/// \param opts           backend automatic (= cpu), cpu, reference or cuda_fused (copies the
///                       data to the device, runs cuda::pool_batched, copies back and
///                       synchronises; no masks yet: invalid_argument "... not supported in
///                       batches or shards on the GPU yet"); cuda_unfused throws
///                       invalid_argument
/// \throws invalid_argument as pool() does, and for bad offsets, a problem with queries but
///         no keys or a mask that does not fit a problem; the message names the problem index.
///         A problem with n_b = 0 may have any m_b, including 0 (leave_one_out: only 0).
void pool_batched(const_view queries, const_view keys, const_view values, mutable_view out,
                  std::span<const std::size_t> query_offsets,
                  std::span<const std::size_t> key_offsets, const pool_params& params = {},
                  const options& opts = {});

/// The partial streaming-softmax states of n query rows over one shard of the keys: for row i,
/// max[i] is a reference log2 score, sum[i] = sum_j 2^(s_ij - max[i]) and acc row i is
/// sum_j 2^(s_ij - max[i]) v_j (unnormalised). The reference is a score the row attained, and
/// the CPU engine keeps it at the largest; the GPU's d = dv = 1 path may leave it up to ~10 log2
/// units below (its lazy rescale), so read max[i] + log2(sum[i]) as the row's log-sum-exp, not
/// max[i] as its best score. Every merge is exact for any reference. A row that saw no key with
/// a finite score (a compact kernel's empty support) has max = -inf, sum = 0 and acc = 0: the
/// merge's identity.
struct partial_states {
  std::size_t n = 0;        ///< query rows
  std::size_t dv = 0;       ///< value columns
  std::vector<float> max;   ///< n, log2 units
  std::vector<float> sum;   ///< n
  std::vector<float> acc;   ///< n x dv, row-major

  /// acc as a view.
  const_view accumulators() const { return {acc.data(), n, dv}; }
  /// The states as a one-shard view (host memory, state_step 1, acc.ld = dv). Valid while the
  /// vectors are neither resized nor destroyed.
  const_partials view() const { return {max.data(), sum.data(), const_view{acc.data(), n, dv}}; }
  /// The same, writable.
  mutable_partials view() { return {max.data(), sum.data(), mutable_view{acc.data(), n, dv}}; }
};

/// The partial states of `queries` over one key shard (keys_shard / values_shard: any subset of
/// the keys, with their values). Merging the shards' states with merge_partials() gives pool()
/// over all keys, up to float32 rounding; with a mask, the masked pool() over all keys when the
/// shards are consecutive key ranges and each is given its share of the mask (below).
/// \param params as for pool(), except params.empty must not be empty_support::nearest (a shard
///        does not know the other shards' keys), and the masks are the shard's share:
///        mask::valid_length takes one count per query row of the keys *of this shard* that the
///        row sees (its keys [0, valid_lens[i])), each in [0, keys_shard.rows]; a row given 0
///        (or a row whose only shard key it skips) gets the empty state, the merge's identity.
///        For a global count L_i over shards in key order, shard s with global keys
///        [o_s, o_s + m_s) takes clamp(L_i - o_s, 0, m_s). mask::leave_one_out: query i skips
///        global key i, i.e. the shard's key i - key_offset where that lies in the shard; any n.
/// \param opts   backend automatic (= cpu), cpu or cuda_fused (copies in, runs
///               cuda::pool_partial, copies back, synchronises; no masks yet: invalid_argument
///               "... not supported in batches or shards on the GPU yet"); reference and
///               cuda_unfused throw invalid_argument
/// \param key_offset the global index of the shard's key 0, read by mask::leave_one_out only
///               (the others' key numbering is the shard's own). An argument rather than a
///               pool_params field because only a shard has a place in a larger key set.
/// Values near float32's range are accumulated without overflow (as in pool()); where a row's
/// accumulator itself exceeds float32, its reference max[i] is raised so that acc and sum fit
/// (the same state for every merge), and where that cannot be represented the call throws error.
/// \throws invalid_argument as pool() does.
partial_states pool_partial(const_view queries, const_view keys_shard, const_view values_shard,
                            const pool_params& params = {}, const options& opts = {},
                            std::size_t key_offset = 0);

/// Merges the shards' partial states with the online-softmax merge, in double (onto the largest
/// reference, in the order given), and writes the normalised n x dv result rounded once to
/// float: accumulators near float32's range merge without overflow. The order is fixed, so the
/// result is bitwise deterministic.
/// \param shards at least one, all with the same n and dv
/// \param out    n x dv; written only if every check passes; it must not overlap any shard
/// \param params only params.empty and params.kernel are read: a row that no shard saw a key
///               for (compact kernels) is an error naming the row (empty_support::error) or NaN
///               (empty_support::nan)
/// \throws invalid_argument on a shape mismatch or an empty row under empty_support::error.
void merge_partials(std::span<const partial_states> shards, mutable_view out,
                    const pool_params& params = {});

}  // namespace attnpool
