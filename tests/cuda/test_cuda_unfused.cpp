// The unfused (cuBLAS) path: pool and attention_weights against the fp64 reference, through the
// device-pointer API and the host entry points.
//
// Tolerance. The GEMM forms ||qc||^2 + ||kc||^2 - 2 qc.kc (centred on keys row 0), whose float32
// rounding is relative to the norms, not to the distance: each score carries an extra error
//   delta_ij <= (d + 4) eps32 (||qc_i|| + ||kc_j||)^2 / (2 h^2)     (natural-log units)
// (d products and sums in the dot product, two norms, the sum of three terms, the clamp). To
// first order a score error moves the output by sum_j w_j delta_j (v_j - out), bounded by
// delta_max * sum_j w_j |v_j - out| <= 2 delta_max * abs_scale. So this path is held to
//   tolerance_for(ref) + 2 delta_max(i) * abs_scale(i, c),
// which equals the fused path's bound when h is not small against the data's spread and is
// vacuous when it is (h = 1e-3 on unit-cube data: delta ~ 1): the unfused path is the baseline,
// not the accurate path, and the tests below keep h >= 1e-2 where delta <= ~0.05.
#include <attnpool/cuda.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

// delta_max of the header comment for query i, with the implementation's centre (keys row 0).
std::vector<double> expansion_error(const problem& p, double h) {
  const const_view q = p.queries(), k = p.keys();
  auto centred_norm = [&](const_view a, std::size_t i) {
    double s = 0.0;
    for (std::size_t c = 0; c < p.d; ++c) {
      const double x = static_cast<double>(a(i, c)) - static_cast<double>(k(0, c));
      s += x * x;
    }
    return std::sqrt(s);
  };
  double kmax = 0.0;
  for (std::size_t j = 0; j < p.m; ++j) kmax = std::max(kmax, centred_norm(k, j));
  const double eps = std::numeric_limits<float>::epsilon();
  std::vector<double> delta(p.n);
  for (std::size_t i = 0; i < p.n; ++i) {
    const double r = centred_norm(q, i) + kmax;
    delta[i] = static_cast<double>(p.d + 4) * eps * r * r / (2.0 * h * h);
  }
  return delta;
}

void expect_unfused_matches(const problem& p, double h, const std::vector<float>& out,
                            std::size_t ld) {
  const pool_params params{h};
  const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
  const std::vector<double> delta = expansion_error(p, h);
  std::size_t failures = 0;
  for (std::size_t i = 0; i < p.n; ++i) {
    for (std::size_t c = 0; c < p.dv; ++c) {
      const std::size_t idx = i * p.dv + c;
      const float got = out[i * ld + c];
      const double tol = tolerance_for(ref, idx, p.d) + 2.0 * delta[i] * ref.abs_scale[idx];
      const double err = std::fabs(static_cast<double>(got) - ref.out[idx]);
      if ((!std::isfinite(got) || err > tol) && ++failures <= 5) {
        ADD_FAILURE() << "out(" << i << ", " << c << ") = " << got << ", reference " << ref.out[idx]
                      << ", |err| " << err << " > tol " << tol << "  [" << describe(p, h) << "]";
      }
    }
  }
  if (failures > 5) ADD_FAILURE() << failures << " elements out of tolerance in total";
}

struct unfused_case {
  std::size_t n, m, d, dv;
  double h;
  float key_offset;
};

class unfused_vs_reference : public testing::TestWithParam<unfused_case> {};

TEST_P(unfused_vs_reference, pool_matches_reference) {
  ATTNPOOL_REQUIRE_DEVICE();
  const unfused_case& c = GetParam();
  const problem p = make_problem(c.n, c.m, c.d, c.dv, fresh_seed(), c.key_offset);
  SCOPED_TRACE(describe(p, c.h));
  const std::vector<float> out = run_pool(p, pool_params{c.h}, backend::cuda_unfused, 2);
  expect_unfused_matches(p, c.h, out, p.dv + 2);
}

std::vector<unfused_case> unfused_cases() {
  std::vector<unfused_case> cases;
  for (std::size_t n : {1, 7, 129, 4097})
    for (std::size_t m : {1, 7, 129, 4097})
      for (std::size_t d : {1, 3, 16}) cases.push_back({n, m, d, d == 16 ? 3u : 1u, 1.0, 0.0f});
  for (double h : {1e-2, 1e-1, 10.0, 1e3}) cases.push_back({129, 4097, 3, 2, h, 0.0f});
  for (double h : {30.0, 100.0, 1e3}) cases.push_back({129, 4097, 3, 2, h, 1e4f});
  for (std::size_t dv : {1, 2, 4, 8, 16, 32, 64, 100})
    cases.push_back({129, 300, 4, dv, 1.0, 0.0f});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(cases, unfused_vs_reference, testing::ValuesIn(unfused_cases()));

TEST(unfused_weights, device_api_matches_reference_weights) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (std::size_t m : {1, 7, 129, 4097}) {
    const problem p = make_problem(129, m, 3, 1, fresh_seed());
    const double h = 0.5;
    SCOPED_TRACE(describe(p, h));
    const pool_params params{h};
    const std::vector<double> want = reference::weights(p.queries(), p.keys(), params);
    const device_problem dp(p);
    poisoned_output w(p.n, p.m, 3);
    device_workspace ws(cuda::attention_weights_workspace_size(p.n, p.m, p.d, params));
    options opts;
    opts.backend = backend::cuda_unfused;
    opts.workspace = ws.data();
    opts.workspace_bytes = ws.bytes();
    cuda::attention_weights(dp.queries(), dp.keys(), w.view(), params, opts);
    cuda_ok(cudaDeviceSynchronize(), "sync");
    const std::vector<float>& got = w.fetch();
    // log w_ij = s_ij - logsumexp_i: its error is delta_ij minus a weighted mean of the
    // delta_ik, so |dw / w| <= 2 delta_max (+ the 1e-5 rounding bar of the project).
    const std::vector<double> delta = expansion_error(p, h);
    std::size_t failures = 0;
    for (std::size_t i = 0; i < p.n; ++i) {
      double row_sum = 0.0;
      for (std::size_t j = 0; j < p.m; ++j) {
        const double ref = want[i * p.m + j];
        const float g = got[i * w.ld + j];
        row_sum += g;
        const double tol = (1e-5 + 2.0 * delta[i]) * ref + 1e-30;
        if ((!std::isfinite(g) || std::fabs(g - ref) > tol) && ++failures <= 5)
          ADD_FAILURE() << "w(" << i << ", " << j << ") = " << g << ", reference " << ref;
      }
      EXPECT_NEAR(row_sum, 1.0, 1e-5) << "row " << i;
    }
  }
}

TEST(unfused_host_api, pool_weights_and_average_through_host_entry_points) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(129, 1000, 2, 3, fresh_seed());
  const double h = 0.7;
  SCOPED_TRACE(describe(p, h));
  const pool_params params{h};
  options opts;
  opts.backend = backend::cuda_unfused;

  std::vector<float> out(p.n * (p.dv + 1));
  poison(out);
  pool(p.queries(), p.keys(), p.values(), mutable_view{out.data(), p.n, p.dv, p.dv + 1}, params,
       opts);
  expect_unfused_matches(p, h, out, p.dv + 1);

  // attention_weights on the host API: cuda_fused falls back to the unfused path.
  opts.backend = backend::cuda_fused;
  std::vector<float> w(p.n * p.m);
  poison(w);
  attention_weights(p.queries(), p.keys(), mutable_view{w.data(), p.n, p.m}, params, opts);
  const std::vector<double> want = reference::weights(p.queries(), p.keys(), params);
  const std::vector<double> delta = expansion_error(p, h);
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t j = 0; j < p.m; ++j)
      ASSERT_NEAR(w[i * p.m + j], want[i * p.m + j],
                  (1e-5 + 2.0 * delta[i]) * want[i * p.m + j] + 1e-30)
          << "w(" << i << ", " << j << ")";

  // average_pool: column means accumulated in double on both sides.
  std::vector<float> avg(5 * (p.dv + 2));
  poison(avg);
  average_pool(p.values(), mutable_view{avg.data(), 5, p.dv, p.dv + 2}, opts);
  for (std::size_t c = 0; c < p.dv; ++c) {
    double sum = 0.0;
    for (std::size_t j = 0; j < p.m; ++j) sum += p.values()(j, c);
    const double mean = sum / static_cast<double>(p.m);
    for (std::size_t i = 0; i < 5; ++i) {
      EXPECT_NEAR(avg[i * (p.dv + 2) + c], mean, 1e-6 * std::fabs(mean) + 1e-7);
      EXPECT_TRUE(std::isnan(avg[i * (p.dv + 2) + p.dv])) << "pad written";
    }
  }
}

}  // namespace
}  // namespace attnpool::test
