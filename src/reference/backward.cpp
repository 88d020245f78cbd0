// The backward pass of pool() in fp64: the oracle of the CPU engine's and the GPU's gradients,
// with a rigorous error bound per gradient element.
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/reference.hpp>

#include "src/reference/engine.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>

namespace attnpool {

reference::gradients reference::pool_backward(const_view q, const_view k, const_view v,
                                              const_view dout, const pool_params& params,
                                              double score_rel_error) {
  detail::reject_non_gaussian("reference::pool_backward", params);
  const auto shape = detail::check_pool_args("reference::pool_backward", q, k, v, dout, params,
                                             detail::mask_support::host);
  const std::size_t n = shape.n, m = shape.m, d = shape.d, dv = shape.dv;
  const double rel = score_rel_error < 0.0 ? float32_score_error(d) : score_rel_error;
  const double h = params.bandwidth, inv_h2 = 1.0 / (h * h), inv_h3 = inv_h2 / h;
  // The forward output's own rounding bar (test_support.hpp's rtol), for the error of D_i.
  constexpr double kForwardRtol = 1e-5;
  gradients g;
  g.n = n;
  g.m = m;
  g.d = d;
  g.value_cols = dv;
  for (auto* a : {&g.dq, &g.dq_scale, &g.dq_bound}) a->assign(n * d, 0.0);
  for (auto* a : {&g.dk, &g.dk_scale, &g.dk_bound}) a->assign(m * d, 0.0);
  for (auto* a : {&g.dv, &g.dv_scale, &g.dv_bound}) a->assign(m * dv, 0.0);
  std::vector<double> s(m), w(m), r(m), dp(m), err(m), out(dv);
  for (std::size_t i = 0; i < n; ++i) {
    // Natural-log scores, masked keys -inf; weights by a two-pass softmax.
    double mx = -INFINITY;
    for (std::size_t j = 0; j < m; ++j) {
      double dist2 = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        const double diff = static_cast<double>(q(i, c)) - static_cast<double>(k(j, c));
        dist2 += diff * diff;
      }
      r[j] = dist2;
      s[j] = key_visible(params, i, j) ? -dist2 / (2.0 * h * h) : -INFINITY;
      mx = std::max(mx, s[j]);
    }
    double sum = 0.0;
    for (std::size_t j = 0; j < m; ++j) sum += (w[j] = std::exp(s[j] - mx));
    const double lse = mx + std::log(sum);
    double mean_abs_s = 0.0;
    for (std::size_t j = 0; j < m; ++j) {
      w[j] /= sum;
      if (w[j] > 0.0) mean_abs_s += w[j] * std::fabs(s[j]);
    }
    // E_ij: relative error of a float32 weight (its score, and the row's log-sum-exp).
    for (std::size_t j = 0; j < m; ++j)
      err[j] = w[j] > 0.0 ? rel * (std::fabs(s[j]) + mean_abs_s + std::fabs(lse) + 1.0) : 0.0;
    std::fill(out.begin(), out.end(), 0.0);
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t c = 0; c < dv; ++c) out[c] += w[j] * v(j, c);
    double dsum = 0.0, dsum_err = 0.0;
    for (std::size_t c = 0; c < dv; ++c) dsum += static_cast<double>(dout(i, c)) * out[c];
    for (std::size_t j = 0; j < m; ++j) {
      double a = 0.0;
      for (std::size_t c = 0; c < dv; ++c) {
        a += static_cast<double>(dout(i, c)) * v(j, c);
      }
      dp[j] = a;
      // |error of D_i| <= sum_j P_ij (E_ij + rtol) sum_c |dout_ic| (|v_jc| + |out_ic|)
      double b = 0.0;
      for (std::size_t c = 0; c < dv; ++c)
        b += std::fabs(dout(i, c)) * (std::fabs(v(j, c)) + std::fabs(out[c]));
      dsum_err += w[j] * (err[j] + kForwardRtol) * b;
    }
    for (std::size_t j = 0; j < m; ++j) {
      if (w[j] == 0.0) continue;
      const double ds = w[j] * (dp[j] - dsum);
      const double ds_abs = w[j] * (std::fabs(dp[j]) + std::fabs(dsum));
      const double ds_err = ds_abs * err[j] + w[j] * dsum_err;
      for (std::size_t c = 0; c < d; ++c) {
        const double diff = static_cast<double>(q(i, c)) - static_cast<double>(k(j, c));
        const double ad = std::fabs(diff) * inv_h2;
        g.dq[i * d + c] -= ds * diff * inv_h2;
        g.dq_scale[i * d + c] += ds_abs * ad;
        g.dq_bound[i * d + c] += ds_err * ad;
        g.dk[j * d + c] += ds * diff * inv_h2;
        g.dk_scale[j * d + c] += ds_abs * ad;
        g.dk_bound[j * d + c] += ds_err * ad;
      }
      for (std::size_t c = 0; c < dv; ++c) {
        const double a = std::fabs(dout(i, c));
        g.dv[j * dv + c] += w[j] * dout(i, c);
        g.dv_scale[j * dv + c] += w[j] * a;
        g.dv_bound[j * dv + c] += w[j] * err[j] * a;
      }
      g.dh += ds * r[j] * inv_h3;
      g.dh_scale += ds_abs * r[j] * inv_h3;
      g.dh_bound += ds_err * r[j] * inv_h3;
    }
  }
  return g;
}

void detail::reference_backward(const_view q, const_view k, const_view v, const_view dout,
                                const pool_gradients& g, const pool_params& params) {
  const auto r = reference::pool_backward(q, k, v, dout, params);
  auto put = [](mutable_view a, const std::vector<double>& x) {
    if (a.data == nullptr) return;
    for (std::size_t i = 0; i < a.rows; ++i)
      for (std::size_t c = 0; c < a.cols; ++c) a(i, c) = static_cast<float>(x[i * a.cols + c]);
  };
  put(g.queries, r.dq);
  put(g.keys, r.dk);
  put(g.values, r.dv);
  if (g.bandwidth != nullptr) *g.bandwidth = r.dh;
}

}  // namespace attnpool
