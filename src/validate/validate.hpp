// Argument checks shared by every backend: one place decides what a valid call is, so the
// reference, the CPU engine and the CUDA paths reject exactly the same inputs with the same words.
#pragma once

#include <attnpool/error.hpp>
#include <attnpool/types.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

namespace attnpool::detail {

struct problem_shape {
  std::size_t n = 0;   // queries
  std::size_t m = 0;   // keys
  std::size_t d = 0;   // input dimension
  std::size_t dv = 0;  // value dimension
};

// Whether the caller implements params.mask. The unfused CUDA path calls the checks with the
// default, so a mask handed to it is rejected loudly ("not implemented on ... yet") instead of
// being ignored; the host entry points pass `host` and get the mask validated against the shape;
// the fused CUDA path passes `gpu_fused`: masks validated as on the host, and the other GPU
// limits (reject_gpu_params without the mask) still apply.
enum class mask_support { gpu_none, host, gpu_fused };

// Shapes, leading dimensions, null pointers, size_t overflow, the bandwidth and the mask.
// `fn` prefixes every message ("pool", "attention_weights", ...); `out_name` names the n x dv
// view ("dout" for pool_backward).
problem_shape check_pool_args(const char* fn, const_view queries, const_view keys,
                              const_view values, const_view out, const pool_params& params,
                              mask_support masks = mask_support::gpu_none,
                              const char* out_name = "out");
problem_shape check_weights_args(const char* fn, const_view queries, const_view keys,
                                 const_view weights, const pool_params& params,
                                 mask_support masks = mask_support::gpu_none);

// One bandwidth: finite and >= kMinBandwidth; the message names `name` (after "<fn>: " unless
// fn is empty).
void check_one_bandwidth(const char* fn, const char* name, double h);

// A view's leading dimension (>= cols), a non-null pointer unless it is empty, and an extent
// that fits size_t; messages name the view ("x.data is null but x is 10 x 1").
void check_view(const char* fn, const char* name, const_view a);

// An optional output view: data == nullptr means "not wanted" and passes; otherwise it must be
// rows x cols with ld >= cols. Used by pool_backward's gradient views.
void check_optional_output(const char* fn, const char* name, const_view a, std::size_t rows,
                           std::size_t cols);

// The mask against n queries and m keys: leave_one_out needs n == m >= 2; valid_length needs n
// counts, each in [1, m]. A row with no visible key is an error naming the row.
void check_mask(const char* fn, const pool_params& params, std::size_t n, std::size_t m);

// What the GPU paths do not implement yet, each an invalid_argument naming it: masks (unless
// `masks_ok`: the fused path implements them), empty_support::nearest (for compact kernels) and
// anisotropic bandwidths with d > 64.
void reject_gpu_params(const char* fn, const pool_params& params, std::size_t d,
                       bool masks_ok = false);

// The GPU's batches and shards (cuda_fused under pool_batched / pool_partial, the cuda::
// versions, pool_sharded and nccl::pool) take no masks: invalid_argument "<fn>: params.mask =
// <mask> is not supported in batches or shards on the GPU yet; ..." for any mask but none.
void reject_shard_mask(const char* fn, const pool_params& params);

// pool_batched's mask, per problem, as check_mask is for one pool() call: valid_length needs
// one count per query row of the whole batch, each in [1, m_b] of its own problem;
// leave_one_out needs n_b == m_b in every problem (m_b >= 2 where n_b > 0). Messages name the
// row, its problem and the value. Offsets already checked (check_batch_offsets).
void check_batch_mask(const char* fn, const pool_params& params,
                      std::span<const std::size_t> query_offsets,
                      std::span<const std::size_t> key_offsets);

// pool_partial's mask over one shard of m keys: valid_length needs n counts, each in [0, m]
// (the shard's keys the row sees; 0 gives the empty state); leave_one_out takes any n (query i
// skips the shard's key i - key_offset where that lies in the shard).
void check_shard_mask(const char* fn, const pool_params& params, std::size_t n, std::size_t m);

// params without its mask: for the shape checks of calls whose mask is checked per problem or
// per shard (check_batch_mask, check_shard_mask).
pool_params without_mask(const pool_params& params);

// Sharded keys (pool_partial, cuda::pool_partial, cuda::merge_partials, pool_sharded) cannot
// apply empty_support::nearest for a compact kernel: a shard does not know the other shards'
// keys. An invalid_argument naming the policy.
void reject_shard_nearest(const char* fn, const pool_params& params);

// Where a row with no key inside a compact kernel's support was found, for its message.
struct empty_row_where {
  // pool_batched's query offsets: the row is named in its problem and in the concatenation.
  std::span<const std::size_t> query_offsets = {};
  // A merge of sharded states: no shard saw a key for the row.
  bool any_shard = false;
  // Whether the entry point takes empty_support::nearest (the message then suggests it).
  bool nearest_ok = true;
};

// empty_support::error for a compact kernel: throws invalid_argument "<fn>: query row <row> has
// no key inside the support of the <kernel> kernel (every weight would be 0/0); ..." with the
// remedies the entry point takes. `row` is the row of the call's queries.
[[noreturn]] void throw_empty_row(const char* fn, const pool_params& params, std::size_t row,
                                  const empty_row_where& where = {});

// d against the GPU backward pass's limit (kMaxGpuBackwardDims: its gradient sums live in
// registers): invalid_argument "<fn>: d = ... exceeds the GPU backward pass's limit ...".
void check_gpu_backward_dims(const char* fn, std::size_t d);

// d and dv against the GPU kernels' int fields: invalid_argument "<fn>: d = ... exceeds the CUDA
// backends' limit of 2^31 - 1".
void check_int_dims(const char* fn, std::size_t d, std::size_t dv);

// The stacked shards `in` of cuda::merge_partials against its output: shards in [1, 2^31 - 1],
// dv within the kernels' int fields, out n x dv with out.ld >= dv, in.acc.ld >= dv, and, when
// there is anything to merge, non-null pointers, state_step >= 1 and shard strides that keep
// the shards apart. Returns false when there is nothing to merge (n == 0 or dv == 0).
bool check_stacked_partials(const char* fn, const const_partials& in, const_view out);

// Rows [r0, r1) of a view (r0 <= r1 <= a.rows), same leading dimension.
template <class T>
matrix_view<T> rows_of(matrix_view<T> a, std::size_t r0, std::size_t r1) {
  return {a.data + r0 * a.ld, r1 - r0, a.cols, a.ld};
}

// The learning API (backward, bandwidth selection, training) is derived for the isotropic
// Gaussian: anything else is an invalid_argument naming the kernel / the bandwidths.
void reject_non_gaussian(const char* fn, const pool_params& params);

// min_c h_c for an anisotropic bandwidth, else params.bandwidth.
double smallest_bandwidth(const pool_params& params);
void check_average_args(const char* fn, const_view values, const_view out);

// log2 of what one accumulated weight may reach over 1: the CPU engine's single-pass tile slack
// (16 log2 units), the GPU's lazy rescale (about 10), and a factor 4 for rounding.
inline constexpr int kAccumulatorHeadroomLog2 = 18;

// The e >= 0 such that terms * 2^18 * amax * 2^-e <= FLT_MAX: 0 for all but magnitudes near
// float32's range (or a non-finite one: nothing to scale then).
inline int overflow_shift(double amax, double terms) {
  const double x =
      amax * terms * std::ldexp(1.0, kAccumulatorHeadroomLog2) / std::numeric_limits<float>::max();
  if (!(x > 1.0) || !std::isfinite(x)) return 0;
  return std::ilogb(x) + 1;  // 2^e > x
}

// The device-pointer entry points, which cannot scale values they do not hold: refuses values
// whose largest magnitude `amax` could overflow the accumulator of a sum over `terms` keys
// (overflow_shift(amax, terms) > 0), naming the limit.
void check_value_headroom(const char* fn, float amax, std::size_t terms);

// Host-memory data checks (options.check_finite): every element finite, and the coordinates
// small enough that every float32 score -||q-k||^2 * log2(e)/(2h^2) is finite.
void check_finite_host(const char* fn, const char* name, const_view a);
// The message of both checks (host and device): "<fn>: <name>(r, c) is <x>; inputs must be
// finite (...)".
[[noreturn]] void throw_nonfinite(const char* fn, const char* name, std::size_t r, std::size_t c,
                                  float x);
void check_score_range_host(const char* fn, const_view queries, const_view keys,
                            const pool_params& params);
// Both, for a call's queries, keys and values (skipped where values.data is null), unless
// opts.check_finite is off.
void check_inputs_host(const char* fn, const options& opts, const_view queries, const_view keys,
                       const_view values, const pool_params& params);

// The largest |coordinate| for which every float32 score is finite (used by the device check).
double max_safe_coordinate(std::size_t d, double bandwidth);

// pool_batched's offsets: B + 1 each (B >= 0), 0 first, non-decreasing, query_offsets ending at
// query_rows and key_offsets at key_rows, and every problem with queries has >= 1 key. Messages
// name the offset array, the index and the problem.
void check_batch_offsets(const char* fn, std::span<const std::size_t> query_offsets,
                         std::span<const std::size_t> key_offsets, std::size_t query_rows,
                         std::size_t key_rows);

// Host buffers that overlap (even by part of a row) or alias: invalid_argument "<fn>: <a> and
// <b> overlap in memory ...". Views with no elements never overlap, and two views with one
// leading dimension whose columns interleave (column blocks of one matrix) share no element.
void check_disjoint(const char* fn, const char* a_name, const_view a, const char* b_name,
                    const_view b);

// A checked product for sizes ("n * m overflows size_t").
std::size_t checked_mul(const char* fn, const char* what, std::size_t a, std::size_t b);

}  // namespace attnpool::detail
