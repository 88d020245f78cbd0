// The fp64 oracle. Deliberately independent of detail/online_softmax.hpp: natural-log scores,
// std::exp, a separate max pass. Anything the engines share is checked against this.
#include <attnpool/reference.hpp>

#include "backends.hpp"
#include "validate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnpool {
namespace {

// Natural-log Gaussian scores of query row i against every key; a masked key scores -inf.
void row_scores(const_view q, const_view k, std::size_t i, const pool_params& params,
                std::vector<double>& s) {
  const double h = params.bandwidth;
  for (std::size_t j = 0; j < k.rows; ++j) {
    if (!reference::key_visible(params, i, j)) {
      s[j] = -std::numeric_limits<double>::infinity();
      continue;
    }
    double dist2 = 0.0;
    for (std::size_t c = 0; c < q.cols; ++c) {
      const double diff = static_cast<double>(q(i, c)) - static_cast<double>(k(j, c));
      dist2 += diff * diff;
    }
    s[j] = -dist2 / (2.0 * h * h);
  }
}

// Turns scores into softmax weights in place; returns nothing, the row sums to 1. Masked keys
// (-inf) get weight 0; check_mask guarantees every row has a visible key, so mx is finite.
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
  std::vector<double> s(shape.m), w(shape.m), w_up(shape.m);
  for (std::size_t i = 0; i < shape.n; ++i) {
    row_scores(q, k, i, params, s);
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
      const double dj = rel * std::fabs(s[j]);
      w_up[j] = std::exp(s[j] - mx + dj) / norm - w[j];  // w_j (e^D_j - 1)
      den += std::exp(s[j] - mx - dj) / norm;             // w_j e^-D_j
    }
    for (std::size_t c = 0; c < shape.dv; ++c) {
      double out = 0.0, abs_scale = 0.0;
      for (std::size_t j = 0; j < shape.m; ++j) {
        out += w[j] * v(j, c);
        abs_scale += w[j] * std::fabs(v(j, c));
      }
      double num = 0.0;
      for (std::size_t j = 0; j < shape.m; ++j)
        if (w_up[j] != 0.0) num += w_up[j] * std::fabs(v(j, c) - out);
      r.out[i * shape.dv + c] = out;
      r.abs_scale[i * shape.dv + c] = abs_scale;
      r.score_bound[i * shape.dv + c] = num / den;
    }
  }
  return r;
}

std::vector<double> reference::weights(const_view q, const_view k, const pool_params& params) {
  const auto shape = detail::check_weights_args("reference::weights", q, k,
                                                const_view{&kShapeOnly, q.rows, k.rows, k.rows},
                                                params, detail::mask_support::host);
  std::vector<double> w(shape.n * shape.m), s(shape.m);
  for (std::size_t i = 0; i < shape.n; ++i) {
    row_scores(q, k, i, params, s);
    softmax_in_place(s);
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
