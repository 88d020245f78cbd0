#include "src/validate/validate.hpp"

#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstdint>
#include <limits>
#include <string>

namespace attnpool {

void check_bandwidth(double h, const char* name) {
  detail::check_one_bandwidth("", name != nullptr ? name : "bandwidth", h);
}

}  // namespace attnpool

namespace attnpool::detail {

void check_view(const char* fn, const char* name, const_view a) {
  ATTNPOOL_EXPECTS(a.ld >= a.cols, fn, ": ", name, ".ld must be >= ", name, ".cols (", a.cols,
                   "), got ", a.ld);
  ATTNPOOL_EXPECTS(a.data != nullptr || a.rows == 0 || a.cols == 0, fn, ": ", name,
                   ".data is null but ", name, " is ", a.rows, " x ", a.cols);
  if (a.rows > 0) {
    // The last element must be addressable: (rows - 1) * ld + cols.
    const std::size_t span = checked_mul(fn, name, a.rows - 1, a.ld);
    ATTNPOOL_EXPECTS(span <= std::numeric_limits<std::size_t>::max() - a.cols, fn, ": ", name,
                     " extent (rows - 1) * ld + cols overflows size_t");
  }
}

void check_one_bandwidth(const char* fn, const char* name, double h) {
  const char* sep = *fn != '\0' ? ": " : "";
  ATTNPOOL_EXPECTS(std::isfinite(h) && h > 0.0, fn, sep, name, " must be finite and > 0, got ", h);
  // The float32 engines fold 1/h^2 (or log2(e)/(2h^2)) into one float: kMinBandwidth keeps it
  // finite.
  ATTNPOOL_EXPECTS(h >= kMinBandwidth, fn, sep, name, " ", h,
                   " is too small for float32 scores: it must be >= kMinBandwidth = 2^-63 (",
                   kMinBandwidth, ", where 1/h^2 is still a finite float32); rescale the inputs");
}

namespace {

// The bandwidth(s), the kernel and the empty-support policy. d = 0: not known yet (the
// anisotropic size is then checked by check_pool_args / check_weights_args).
void check_bandwidth(const char* fn, const pool_params& params, std::size_t d) {
  if (params.bandwidths.empty()) {
    check_one_bandwidth(fn, "bandwidth", params.bandwidth);
  } else {
    ATTNPOOL_EXPECTS(params.bandwidths.size() == d, fn, ": params.bandwidths must hold one ",
                     "bandwidth per input dimension (d = ", d, "), got ", params.bandwidths.size());
    for (std::size_t c = 0; c < d; ++c) {
      const std::string name = concat("bandwidths[", c, "]");
      check_one_bandwidth(fn, name.c_str(), params.bandwidths[c]);
    }
  }
  switch (params.kernel) {
    case kernel::gaussian:
    case kernel::laplacian:
    case kernel::epanechnikov:
    case kernel::boxcar:
    case kernel::tricube:
      break;
    default:
      throw invalid_argument(concat(fn, ": unknown kernel ", static_cast<int>(params.kernel)));
  }
  ATTNPOOL_EXPECTS(params.empty == empty_support::error || params.empty == empty_support::nan ||
                       params.empty == empty_support::nearest,
                   fn, ": unknown empty_support policy ", static_cast<int>(params.empty));
}

}  // namespace

namespace {
// The bytes [begin, end) that a view's elements span; begin == end when it holds none.
struct byte_range {
  std::uintptr_t begin = 0, end = 0;
};
byte_range range_of(const_view a) {
  if (a.data == nullptr || a.rows == 0 || a.cols == 0) return {};
  const auto b = reinterpret_cast<std::uintptr_t>(a.data);
  return {b, b + ((a.rows - 1) * a.ld + a.cols) * sizeof(float)};
}
}  // namespace

void check_disjoint(const char* fn, const char* a_name, const_view a, const char* b_name,
                    const_view b) {
  const byte_range ra = range_of(a), rb = range_of(b);
  if (ra.begin == ra.end || rb.begin == rb.end) return;
  if (ra.end <= rb.begin || rb.end <= ra.begin) return;
  if (a.ld == b.ld) {
    // Row by row, the earlier view's columns must end before the later one's begin, and the
    // later one's must end before the earlier one's next row.
    const bool a_first = ra.begin <= rb.begin;
    const std::uintptr_t gap = a_first ? rb.begin - ra.begin : ra.begin - rb.begin;
    const const_view& lo = a_first ? a : b;
    const const_view& hi = a_first ? b : a;
    const std::size_t off = gap / sizeof(float) % a.ld;
    if (gap % sizeof(float) == 0 && off >= lo.cols && off + hi.cols <= a.ld) return;
  }
  throw invalid_argument(concat(fn, ": ", a_name, " and ", b_name, " overlap in memory (", a_name,
                                " spans bytes [", a.data, ", +", ra.end - ra.begin, "), ", b_name,
                                " [", b.data, ", +", rb.end - rb.begin,
                                ")); an output must neither overlap nor alias an input"));
}

std::size_t checked_mul(const char* fn, const char* what, std::size_t a, std::size_t b) {
  ATTNPOOL_EXPECTS(b == 0 || a <= std::numeric_limits<std::size_t>::max() / b, fn, ": ", what,
                   " size ", a, " * ", b, " overflows size_t");
  return a * b;
}

double smallest_bandwidth(const pool_params& params) {
  if (params.bandwidths.empty()) return params.bandwidth;
  return *std::min_element(params.bandwidths.begin(), params.bandwidths.end());
}

void reject_non_gaussian(const char* fn, const pool_params& params) {
  ATTNPOOL_EXPECTS(
      params.kernel == kernel::gaussian, fn, ": params.kernel = ", to_string(params.kernel),
      " is not supported by the learning API (gradients, ",
      "bandwidth selection and training are derived for the Gaussian); use ", "kernel::gaussian");
  ATTNPOOL_EXPECTS(params.bandwidths.empty(), fn, ": an anisotropic bandwidth (params.bandwidths",
                   ", ", params.bandwidths.size(), " values) is not supported by the learning ",
                   "API; use the isotropic params.bandwidth");
}

namespace {
// Throws invalid_argument "<fn>: params.mask = <mask> is not implemented on the GPU yet ..."
// for any mask but none: the GPU paths without masks.
void reject_gpu_mask(const char* fn, const pool_params& params) {
  ATTNPOOL_EXPECTS(params.mask == mask::none, fn, ": params.mask = ", to_string(params.mask),
                   " is not implemented on the GPU yet for this call or backend (pool and ",
                   "pool_backward take masks on cuda_fused); use backend cuda_fused, cpu or "
                   "reference");
}
}  // namespace

void reject_gpu_params(const char* fn, const pool_params& params, std::size_t d, bool masks_ok) {
  if (!masks_ok) reject_gpu_mask(fn, params);
  ATTNPOOL_EXPECTS(params.empty != empty_support::nearest || !is_compact(params.kernel), fn,
                   ": params.empty = nearest is not implemented on the GPU yet; use ",
                   "empty_support::error or nan, or backend cpu or reference");
  ATTNPOOL_EXPECTS(params.bandwidths.empty() || d <= kMaxGpuAnisotropicDims, fn,
                   ": an anisotropic bandwidth with d = ", d, " > ", kMaxGpuAnisotropicDims,
                   " is not implemented on the GPU yet; use backend cpu or reference");
}

void reject_shard_mask(const char* fn, const pool_params& params) {
  ATTNPOOL_EXPECTS(params.mask == mask::none, fn, ": params.mask = ", to_string(params.mask),
                   " is not supported in batches or shards on the GPU yet; use mask::none, or ",
                   "the host pool_batched / pool_partial with backend cpu");
}

void check_batch_mask(const char* fn, const pool_params& params,
                      std::span<const std::size_t> query_offsets,
                      std::span<const std::size_t> key_offsets) {
  const std::size_t problems = query_offsets.size() - 1, n = query_offsets.back();
  switch (params.mask) {
    case mask::none:
      return;
    case mask::leave_one_out:
      for (std::size_t b = 0; b < problems; ++b) {
        const std::size_t nb = query_offsets[b + 1] - query_offsets[b];
        const std::size_t mb = key_offsets[b + 1] - key_offsets[b];
        ATTNPOOL_EXPECTS(nb == mb, fn, ": mask leave_one_out needs as many queries as keys in ",
                         "every problem (the same set), but problem ", b, " has n_b = ", nb,
                         " and m_b = ", mb);
        ATTNPOOL_EXPECTS(mb >= 2 || nb == 0, fn, ": mask leave_one_out leaves row ",
                         query_offsets[b], " (row 0 of problem ", b, ") with no key (m_b = ", mb,
                         "); it needs m_b >= 2");
      }
      return;
    case mask::valid_length:
      ATTNPOOL_EXPECTS(params.valid_lens.size() == n, fn, ": params.valid_lens must hold one ",
                       "count per query row of the whole batch (sum n_b = ", n, "), got ",
                       params.valid_lens.size());
      for (std::size_t b = 0; b < problems; ++b) {
        const std::size_t mb = key_offsets[b + 1] - key_offsets[b];
        for (std::size_t i = query_offsets[b]; i < query_offsets[b + 1]; ++i) {
          const std::size_t len = params.valid_lens[i];
          ATTNPOOL_EXPECTS(len >= 1 && len <= mb, fn, ": valid_lens[", i, "] = ", len, " (row ",
                           i - query_offsets[b], " of problem ", b, ") is outside [1, ",
                           "m_b = ", mb, "]; every count must be in [1, m_b] of its problem");
        }
      }
      return;
  }
  throw invalid_argument(concat(fn, ": unknown mask ", static_cast<int>(params.mask)));
}

void check_shard_mask(const char* fn, const pool_params& params, std::size_t n, std::size_t m) {
  switch (params.mask) {
    case mask::none:
    case mask::leave_one_out:
      return;
    case mask::valid_length:
      ATTNPOOL_EXPECTS(params.valid_lens.size() == n, fn, ": params.valid_lens must hold one ",
                       "count per query (n = ", n, "), got ", params.valid_lens.size());
      for (std::size_t i = 0; i < n; ++i)
        ATTNPOOL_EXPECTS(params.valid_lens[i] <= m, fn, ": valid_lens[", i,
                         "] = ", params.valid_lens[i], " exceeds this shard's key count m = ", m,
                         "; every count must be in [0, m] (the shard's keys the row sees)");
      return;
  }
  throw invalid_argument(concat(fn, ": unknown mask ", static_cast<int>(params.mask)));
}

pool_params without_mask(const pool_params& params) {
  pool_params p = params;
  p.mask = mask::none;
  p.valid_lens = {};
  return p;
}

void reject_shard_nearest(const char* fn, const pool_params& params) {
  ATTNPOOL_EXPECTS(params.empty != empty_support::nearest || !is_compact(params.kernel), fn,
                   ": params.empty = nearest is not supported for sharded keys (a shard does not ",
                   "know the other shards' keys); use empty_support::error or nan");
}

void throw_empty_row(const char* fn, const pool_params& params, std::size_t row,
                     const empty_row_where& where) {
  std::string which = concat("query row ", row);
  if (!where.query_offsets.empty()) {
    const auto& off = where.query_offsets;
    const auto b =
        static_cast<std::size_t>(std::upper_bound(off.begin(), off.end(), row) - off.begin() - 1);
    which = concat("query row ", row - off[b], " of problem ", b, " (row ", row,
                   " of the concatenated queries)");
  }
  throw invalid_argument(concat(fn, ": ", which, " has no key inside the support of the ",
                                to_string(params.kernel), " kernel",
                                where.any_shard ? " in any shard" : "",
                                " (every weight would be 0/0); widen the bandwidth, or choose ",
                                "params.empty = nan", where.nearest_ok ? " or nearest" : ""));
}

void check_optional_output(const char* fn, const char* name, const_view a, std::size_t rows,
                           std::size_t cols) {
  if (a.data == nullptr) return;
  ATTNPOOL_EXPECTS(a.rows == rows && a.cols == cols, fn, ": ", name, " must be ", rows, " x ", cols,
                   " (or an empty view to skip it), got ", a.rows, " x ", a.cols);
  check_view(fn, name, a);
}

void check_mask(const char* fn, const pool_params& params, std::size_t n, std::size_t m) {
  switch (params.mask) {
    case mask::none:
      return;
    case mask::leave_one_out:
      ATTNPOOL_EXPECTS(n == m, fn, ": mask leave_one_out needs as many queries as keys (the same ",
                       "set), got n = ", n, " and m = ", m);
      // With one key, query 0 would see no key at all.
      ATTNPOOL_EXPECTS(m >= 2 || n == 0, fn, ": mask leave_one_out leaves row 0 with no key ",
                       "(m = ", m, "); it needs m >= 2");
      return;
    case mask::valid_length:
      ATTNPOOL_EXPECTS(params.valid_lens.size() == n, fn, ": params.valid_lens must hold one ",
                       "count per query (n = ", n, "), got ", params.valid_lens.size());
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t len = params.valid_lens[i];
        ATTNPOOL_EXPECTS(len >= 1, fn, ": valid_lens[", i, "] = 0 leaves row ", i,
                         " with no key; every count must be in [1, m]");
        ATTNPOOL_EXPECTS(len <= m, fn, ": valid_lens[", i, "] = ", len, " exceeds the key count ",
                         "m = ", m, "; every count must be in [1, m]");
      }
      return;
  }
  throw invalid_argument(concat(fn, ": unknown mask ", static_cast<int>(params.mask)));
}

namespace {
// What pool and attention_weights share: the parameters, d and m.
problem_shape check_queries_keys(const char* fn, const_view queries, const_view keys,
                                 std::size_t dv, const pool_params& params, mask_support masks) {
  check_bandwidth(fn, params, queries.cols);
  if (masks != mask_support::host)
    reject_gpu_params(fn, params, queries.cols, masks == mask_support::gpu_fused);
  const problem_shape s{queries.rows, keys.rows, queries.cols, dv};
  ATTNPOOL_EXPECTS(s.d >= 1, fn, ": queries.cols (d) must be >= 1, got ", s.d);
  ATTNPOOL_EXPECTS(keys.cols == s.d, fn, ": keys.cols must equal queries.cols (d = ", s.d,
                   "), got ", keys.cols);
  ATTNPOOL_EXPECTS(s.m >= 1, fn, ": keys.rows (m) must be >= 1, got ", s.m);
  return s;
}
}  // namespace

problem_shape check_pool_args(const char* fn, const_view queries, const_view keys,
                              const_view values, const_view out, const pool_params& params,
                              mask_support masks, const char* out_name) {
  const problem_shape s = check_queries_keys(fn, queries, keys, values.cols, params, masks);
  ATTNPOOL_EXPECTS(values.rows == s.m, fn, ": values.rows must equal keys.rows (m = ", s.m,
                   "), got ", values.rows);
  ATTNPOOL_EXPECTS(s.dv >= 1, fn, ": values.cols (dv) must be >= 1, got ", s.dv);
  ATTNPOOL_EXPECTS(out.rows == s.n, fn, ": ", out_name, ".rows must equal queries.rows (n = ",
                   s.n, "), got ", out.rows);
  ATTNPOOL_EXPECTS(out.cols == s.dv, fn, ": ", out_name, ".cols must equal values.cols (dv = ",
                   s.dv, "), got ", out.cols);
  check_view(fn, "queries", queries);
  check_view(fn, "keys", keys);
  check_view(fn, "values", values);
  check_view(fn, out_name, out);
  checked_mul(fn, "n * m", s.n, s.m);
  checked_mul(fn, "n * dv", s.n, s.dv);
  check_mask(fn, params, s.n, s.m);
  return s;
}

problem_shape check_weights_args(const char* fn, const_view queries, const_view keys,
                                 const_view weights, const pool_params& params,
                                 mask_support masks) {
  const problem_shape s = check_queries_keys(fn, queries, keys, 0, params, masks);
  ATTNPOOL_EXPECTS(weights.rows == s.n, fn, ": weights.rows must equal queries.rows (n = ", s.n,
                   "), got ", weights.rows);
  ATTNPOOL_EXPECTS(weights.cols == s.m, fn, ": weights.cols must equal keys.rows (m = ", s.m,
                   "), got ", weights.cols);
  check_view(fn, "queries", queries);
  check_view(fn, "keys", keys);
  check_view(fn, "weights", weights);
  checked_mul(fn, "n * m", s.n, s.m);
  check_mask(fn, params, s.n, s.m);
  return s;
}

void check_value_headroom(const char* fn, float amax, std::size_t terms) {
  const double limit =
      std::ldexp(static_cast<double>(std::numeric_limits<float>::max()), -kAccumulatorHeadroomLog2);
  ATTNPOOL_EXPECTS(overflow_shift(amax, static_cast<double>(terms)) == 0, fn, ": values up to ",
                   amax, " over ", terms,
                   " keys could overflow float32's accumulator on the device",
                   " (keys * max|value| must stay below FLT_MAX / 2^", kAccumulatorHeadroomLog2,
                   " = ", limit, "); scale the values, or pass host arrays, which are scaled");
}

void check_average_args(const char* fn, const_view values, const_view out) {
  ATTNPOOL_EXPECTS(values.rows >= 1, fn, ": values.rows (m) must be >= 1, got ", values.rows);
  ATTNPOOL_EXPECTS(values.cols >= 1, fn, ": values.cols (dv) must be >= 1, got ", values.cols);
  ATTNPOOL_EXPECTS(out.cols == values.cols, fn,
                   ": out.cols must equal values.cols (dv = ", values.cols, "), got ", out.cols);
  check_view(fn, "values", values);
  check_view(fn, "out", out);
}

void check_finite_host(const char* fn, const char* name, const_view a) {
  for (std::size_t i = 0; i < a.rows; ++i) {
    const float* row = a.row(i);
    bool ok = true;
    for (std::size_t j = 0; j < a.cols; ++j) ok &= std::isfinite(row[j]);
    if (ok) continue;
    for (std::size_t j = 0; j < a.cols; ++j)
      if (!std::isfinite(row[j])) throw_nonfinite(fn, name, i, j, row[j]);
  }
}

void throw_nonfinite(const char* fn, const char* name, std::size_t r, std::size_t c, float x) {
  throw invalid_argument(concat(fn, ": ", name, "(", r, ", ", c, ") is ", x,
                                "; inputs must be finite (options.check_finite = false skips "
                                "this check)"));
}

double max_safe_coordinate(std::size_t d, double bandwidth) {
  // For every kernel the squared distance (before the kernel's scale) must be finite, and the
  // Gaussian's scaled score is the largest of the kernels' scores in magnitude, so its limit
  // serves them all (conservatively: compact kernels only need the distance itself finite).
  // |q - k| <= 2R per coordinate, so ||q - k||^2 <= 4 d R^2. Both the squared distance and the
  // scaled score must stay below FLT_MAX; keep a factor 2 of headroom for rounding.
  const double flt_max = std::numeric_limits<float>::max();
  const double limit = std::min(flt_max, flt_max / gaussian_log2_scale(bandwidth)) / 2.0;
  return std::sqrt(limit / (4.0 * static_cast<double>(d)));
}

void check_score_range_host(const char* fn, const_view queries, const_view keys,
                            const pool_params& params) {
  float r = 0.0f;
  for (const_view a : {queries, keys}) {
    for (std::size_t i = 0; i < a.rows; ++i) {
      for (std::size_t j = 0; j < a.cols; ++j) r = std::max(r, std::fabs(a(i, j)));
    }
  }
  const double h = smallest_bandwidth(params);
  const double safe = max_safe_coordinate(queries.cols, h);
  ATTNPOOL_EXPECTS(r <= safe, fn, ": coordinates up to ", r, " overflow float32 scores at ",
                   "bandwidth ", h, " and d = ", queries.cols, " (the limit is ", safe,
                   "); centre or rescale the inputs");
}

void check_inputs_host(const char* fn, const options& opts, const_view queries, const_view keys,
                       const_view values, const pool_params& params) {
  if (!opts.check_finite) return;
  check_finite_host(fn, "queries", queries);
  check_finite_host(fn, "keys", keys);
  if (values.data != nullptr) check_finite_host(fn, "values", values);
  check_score_range_host(fn, queries, keys, params);
}

namespace {
// B + 1 offsets into `rows` rows: 0 first, non-decreasing, `rows` last.
void check_offsets(const char* fn, const char* name, std::span<const std::size_t> offsets,
                   std::size_t rows, const char* rows_name) {
  ATTNPOOL_EXPECTS(!offsets.empty(), fn, ": ", name, " must hold B + 1 >= 1 offsets, got none");
  ATTNPOOL_EXPECTS(offsets.front() == 0, fn, ": ", name, "[0] must be 0, got ", offsets.front());
  for (std::size_t b = 0; b + 1 < offsets.size(); ++b) {
    ATTNPOOL_EXPECTS(offsets[b] <= offsets[b + 1], fn, ": ", name, " must be non-decreasing, but",
                     " problem ", b, " has ", name, "[", b, "] = ", offsets[b], " > ", name, "[",
                     b + 1, "] = ", offsets[b + 1]);
  }
  ATTNPOOL_EXPECTS(offsets.back() == rows, fn, ": ", name, "[B] must equal ", rows_name, " (", rows,
                   "), got ", offsets.back());
}
}  // namespace

void check_batch_offsets(const char* fn, std::span<const std::size_t> query_offsets,
                         std::span<const std::size_t> key_offsets, std::size_t query_rows,
                         std::size_t key_rows) {
  ATTNPOOL_EXPECTS(query_offsets.size() == key_offsets.size(), fn, ": query_offsets and ",
                   "key_offsets must both hold B + 1 offsets, got ", query_offsets.size(), " and ",
                   key_offsets.size());
  check_offsets(fn, "query_offsets", query_offsets, query_rows, "queries.rows");
  check_offsets(fn, "key_offsets", key_offsets, key_rows, "keys.rows");
  const std::size_t problems = query_offsets.size() - 1;
  for (std::size_t p = 0; p < problems; ++p) {
    const std::size_t nb = query_offsets[p + 1] - query_offsets[p];
    const std::size_t mb = key_offsets[p + 1] - key_offsets[p];
    ATTNPOOL_EXPECTS(nb == 0 || mb >= 1, fn, ": problem ", p, " has ", nb, " queries but no ",
                     "keys (key_offsets[", p, "] = key_offsets[", p + 1, "] = ", key_offsets[p],
                     "); a problem with queries needs m_b >= 1");
  }
}

void check_gpu_backward_dims(const char* fn, std::size_t d) {
  ATTNPOOL_EXPECTS(d <= kMaxGpuBackwardDims, fn, ": d = ", d,
                   " exceeds the GPU backward pass's limit of ", kMaxGpuBackwardDims,
                   " (its gradient sums live in registers); use backend cpu");
}

void check_int_dims(const char* fn, std::size_t d, std::size_t dv) {
  ATTNPOOL_EXPECTS(d <= static_cast<std::size_t>(INT_MAX), fn, ": d = ", d,
                   " exceeds the CUDA backends' limit of 2^31 - 1");
  ATTNPOOL_EXPECTS(dv <= static_cast<std::size_t>(INT_MAX), fn, ": dv = ", dv,
                   " exceeds the CUDA backends' limit of 2^31 - 1");
}

bool check_stacked_partials(const char* fn, const const_partials& in, const_view out) {
  const std::size_t n = in.acc.rows, dv = in.acc.cols;
  ATTNPOOL_EXPECTS(in.shards >= 1, fn, ": shards.shards must be >= 1, got ", in.shards);
  ATTNPOOL_EXPECTS(in.shards <= static_cast<std::size_t>(INT_MAX), fn,
                   ": shards.shards = ", in.shards, " exceeds 2^31 - 1");
  check_int_dims(fn, 1, dv);
  ATTNPOOL_EXPECTS(out.rows == n && out.cols == dv, fn, ": out must be ", n, " x ", dv,
                   " (shards.acc's shape), got ", out.rows, " x ", out.cols);
  ATTNPOOL_EXPECTS(out.ld >= out.cols, fn, ": out.ld must be >= out.cols (", out.cols, "), got ",
                   out.ld);
  ATTNPOOL_EXPECTS(in.acc.ld >= dv, fn, ": shards.acc.ld must be >= dv (", dv, "), got ",
                   in.acc.ld);
  if (n == 0 || dv == 0) return false;
  ATTNPOOL_EXPECTS(
      in.max != nullptr && in.sum != nullptr && in.acc.data != nullptr && out.data != nullptr, fn,
      ": shards.max, shards.sum, shards.acc.data and out.data must be device ", "pointers, got ",
      in.max, ", ", in.sum, ", ", in.acc.data, " and ", out.data);
  ATTNPOOL_EXPECTS(in.state_step >= 1, fn, ": shards.state_step must be >= 1, got ", in.state_step);
  if (in.shards > 1) {
    const std::size_t state_span = (n - 1) * in.state_step + 1;
    ATTNPOOL_EXPECTS(in.state_stride >= state_span, fn, ": shards.state_stride must be >= ",
                     in.state_step == 1 ? "n (" : "(n - 1) * state_step + 1 (", state_span,
                     ") so that the shards' max and sum arrays do not overlap, got ",
                     in.state_stride);
    const std::size_t acc_span = (n - 1) * in.acc.ld + dv;
    ATTNPOOL_EXPECTS(in.acc_stride >= acc_span, fn,
                     ": shards.acc_stride must be >= ", "(n - 1) * acc.ld + dv = ", acc_span,
                     " so that the shards' accumulators ", "do not overlap, got ", in.acc_stride);
  }
  return true;
}

}  // namespace attnpool::detail
