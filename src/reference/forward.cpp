// The fp64 oracle. Deliberately independent of detail/online_softmax.hpp: natural-log scores,
// std::exp, a separate max pass. Anything the engines share is checked against this.
#include <attnpool/reference.hpp>

#include "src/reference/engine.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnpool {
namespace {

// u^2 = ||q_i - k_j||^2 / h^2, or sum_c (q_ic - k_jc)^2 / h_c^2 for an anisotropic bandwidth.
double scaled_dist2(const_view q, const_view k, std::size_t i, std::size_t j,
                    const pool_params& params) {
  double u2 = 0.0;
  for (std::size_t c = 0; c < q.cols; ++c) {
    const double diff = static_cast<double>(q(i, c)) - static_cast<double>(k(j, c));
    const double h = params.bandwidths.empty() ? params.bandwidth : params.bandwidths[c];
    u2 += diff * diff / (h * h);
  }
  return u2;
}

// The natural-log score ln K(u) of each kernel, straight from its definition (types.hpp).
double log_kernel(kernel kind, double u2) {
  const double inf = std::numeric_limits<double>::infinity();
  switch (kind) {
    case kernel::gaussian: return -u2 / 2.0;
    case kernel::laplacian: return -std::sqrt(u2);
    case kernel::epanechnikov: return u2 < 1.0 ? std::log(1.0 - u2) : -inf;
    case kernel::boxcar: return u2 < 1.0 ? 0.0 : -inf;
    case kernel::tricube: {
      if (!(u2 < 1.0)) return -inf;
      const double u = std::sqrt(u2);
      return 3.0 * std::log(1.0 - u * u * u);
    }
  }
  return -inf;
}

// D_j: a bound on the error of a float32 engine's score s = ln K(u), given its relative error
// `rel` on u^2 (and on Gaussian / Laplacian scores: those are u^2 / 2 and u = sqrt(u^2) times a
// constant, so the relative bound carries over, sqrt halving it). For the compact kernels the
// score is ln(1 - x) with x = u^2 (Epanechnikov) or u^3 (tricube, relative error <= 2 rel:
// 3/2 of u^2's through the sqrt and product, plus their roundings): 1 - x is off by at most
// rel * x absolutely, i.e. by the factor 1 + rel x / (1 - x), and log2 / exp2 / the rounding
// of the result add rel (1 + |s|). Boxcar scores are exactly 0 inside the support (keys at
// the edge, where float and double may disagree, are the tests' business to avoid).
double score_error(kernel kind, double u2, double s, double rel) {
  switch (kind) {
    case kernel::gaussian:
    case kernel::laplacian: return rel * std::fabs(s);
    case kernel::epanechnikov: return std::log1p(rel * u2 / (1.0 - u2)) + rel * (1.0 + std::fabs(s));
    case kernel::boxcar: return 0.0;
    case kernel::tricube: {
      const double u3 = u2 * std::sqrt(u2);
      return 3.0 * std::log1p(2.0 * rel * u3 / (1.0 - u3)) + rel * (1.0 + std::fabs(s));
    }
  }
  return 0.0;
}

// Natural-log scores of query row i against every key; a masked key, or one outside a compact
// kernel's support, scores -inf. u2[j] receives u^2 (inf for masked keys).
void row_scores(const_view q, const_view k, std::size_t i, const pool_params& params,
                std::vector<double>& s, std::vector<double>& u2) {
  for (std::size_t j = 0; j < k.rows; ++j) {
    if (!reference::key_visible(params, i, j)) {
      s[j] = -std::numeric_limits<double>::infinity();
      u2[j] = std::numeric_limits<double>::infinity();
      continue;
    }
    u2[j] = scaled_dist2(q, k, i, j, params);
    s[j] = log_kernel(params.kernel, u2[j]);
  }
}

// A row whose every score is -inf: a query with no key in the kernel's support (check_mask
// already ruled out rows with no visible key). Returns the one-hot weights of the
// empty_support::nearest policy (the visible key of smallest u^2, lowest index on a tie), an
// all-NaN row for empty_support::nan, or throws for empty_support::error.
void empty_row(const char* fn, const pool_params& params, std::size_t i,
               const std::vector<double>& u2, std::vector<double>& w) {
  if (params.empty == empty_support::error) detail::throw_empty_row(fn, params, i);
  if (params.empty == empty_support::nan) {
    std::fill(w.begin(), w.end(), std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const auto best = std::min_element(u2.begin(), u2.end()) - u2.begin();
  std::fill(w.begin(), w.end(), 0.0);
  w[static_cast<std::size_t>(best)] = 1.0;
}

bool row_is_empty(const std::vector<double>& s) {
  return std::all_of(s.begin(), s.end(), [](double x) { return std::isinf(x); });
}

// Turns scores into softmax weights in place; returns nothing, the row sums to 1. Masked keys
// (-inf) get weight 0; the caller handled rows with no finite score, so mx is finite.
void softmax_in_place(std::vector<double>& s) {
  const double mx = *std::max_element(s.begin(), s.end());
  double sum = 0.0;
  for (double& x : s) {
    x = std::exp(x - mx);
    sum += x;
  }
  for (double& x : s) x /= sum;
}

// The oracle writes fp64 buffers of its own; the shared checks still want an output view.
// This one has the right shape and is never dereferenced.
const float kShapeOnly = 0.0f;

}  // namespace

bool reference::key_visible(const pool_params& params, std::size_t i, std::size_t j) {
  switch (params.mask) {
    case mask::none: return true;
    case mask::leave_one_out: return i != j;
    case mask::valid_length: return j < params.valid_lens[i];
  }
  return true;
}

double reference::float32_score_error(std::size_t d) {
  // An anisotropic bandwidth adds the rounding of each 1/h_c^2 and one product per coordinate
  // (about eps32 more), which the factor-2 slack of d + 4 covers.
  return static_cast<double>(d + 4) * std::numeric_limits<float>::epsilon();
}

reference::pooled reference::pool(const_view q, const_view k, const_view v,
                                  const pool_params& params, double score_rel_error) {
  const auto shape = detail::check_pool_args("reference::pool", q, k, v,
                                             const_view{&kShapeOnly, q.rows, v.cols, v.cols},
                                             params, detail::mask_support::host);
  const double rel = score_rel_error < 0.0 ? float32_score_error(shape.d) : score_rel_error;
  pooled r;
  r.n = shape.n;
  r.dv = shape.dv;
  r.out.assign(shape.n * shape.dv, 0.0);
  r.abs_scale.assign(shape.n * shape.dv, 0.0);
  r.score_bound.assign(shape.n * shape.dv, 0.0);
  std::vector<double> s(shape.m), u2(shape.m), w(shape.m), w_up(shape.m);
  for (std::size_t i = 0; i < shape.n; ++i) {
    row_scores(q, k, i, params, s, u2);
    if (row_is_empty(s)) {
      // The policy's output is exact (a copied value row, or NaN): no rounding to bound.
      empty_row("reference::pool", params, i, u2, w);
      for (std::size_t c = 0; c < shape.dv; ++c) {
        double out = 0.0;
        for (std::size_t j = 0; j < shape.m; ++j)
          if (w[j] != 0.0) out += w[j] * v(j, c);
        r.out[i * shape.dv + c] = out;
        r.abs_scale[i * shape.dv + c] = std::isnan(out) ? 0.0 : std::fabs(out);
      }
      continue;
    }
    w = s;
    softmax_in_place(w);
    // w_j e^{+-D_j} in log space: w_j itself may underflow where e^D_j does not.
    const double mx = *std::max_element(s.begin(), s.end());
    double norm = 0.0;
    for (double x : s) norm += std::exp(x - mx);
    double den = 0.0;
    for (std::size_t j = 0; j < shape.m; ++j) {
      if (std::isinf(s[j])) {  // a masked key: no weight, no error
        w_up[j] = 0.0;
        continue;
      }
      const double dj = score_error(params.kernel, u2[j], s[j], rel);
      w_up[j] = std::exp(s[j] - mx + dj) / norm - w[j];  // w_j (e^D_j - 1)
      den += std::exp(s[j] - mx - dj) / norm;             // w_j e^-D_j
    }
    for (std::size_t c = 0; c < shape.dv; ++c) {
      double out = 0.0, abs_scale = 0.0;
      for (std::size_t j = 0; j < shape.m; ++j) {
        out += w[j] * v(j, c);
        abs_scale += w[j] * std::fabs(v(j, c));
      }
      // A key whose value equals the output moves nothing, however wrong its weight: skipping
      // it keeps inf * 0 (scores ~1e14, where e^D_j overflows) from turning the bound into NaN.
      double num = 0.0;
      for (std::size_t j = 0; j < shape.m; ++j) {
        const double diff = std::fabs(v(j, c) - out);
        if (w_up[j] != 0.0 && diff != 0.0) num += w_up[j] * diff;
      }
      r.out[i * shape.dv + c] = out;
      r.abs_scale[i * shape.dv + c] = abs_scale;
      // den underflows to 0 when every e^-D_j does: no finite bound then, unless nothing moves.
      r.score_bound[i * shape.dv + c] =
          den > 0.0 ? num / den : (num > 0.0 ? std::numeric_limits<double>::infinity() : 0.0);
    }
  }
  return r;
}

std::vector<double> reference::weights(const_view q, const_view k, const pool_params& params) {
  const auto shape = detail::check_weights_args("reference::weights", q, k,
                                                const_view{&kShapeOnly, q.rows, k.rows, k.rows},
                                                params, detail::mask_support::host);
  std::vector<double> w(shape.n * shape.m), s(shape.m), u2(shape.m);
  for (std::size_t i = 0; i < shape.n; ++i) {
    row_scores(q, k, i, params, s, u2);
    if (row_is_empty(s)) {
      empty_row("reference::weights", params, i, u2, s);
    } else {
      softmax_in_place(s);
    }
    std::copy(s.begin(), s.end(), w.begin() + static_cast<std::ptrdiff_t>(i * shape.m));
  }
  return w;
}

void detail::reference_pool(const_view q, const_view k, const_view v, mutable_view out,
                            const pool_params& params) {
  const auto r = reference::pool(q, k, v, params);
  for (std::size_t i = 0; i < r.n; ++i)
    for (std::size_t c = 0; c < r.dv; ++c) out(i, c) = static_cast<float>(r.out[i * r.dv + c]);
}

void detail::reference_weights(const_view q, const_view k, mutable_view w,
                               const pool_params& params) {
  const auto r = reference::weights(q, k, params);
  for (std::size_t i = 0; i < w.rows; ++i)
    for (std::size_t j = 0; j < w.cols; ++j) w(i, j) = static_cast<float>(r[i * w.cols + j]);
}

}  // namespace attnpool
