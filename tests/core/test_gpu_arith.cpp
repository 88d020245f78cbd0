// The fused GPU agent's expanded d = 1 score (detail/expanded_score.hpp) on the CPU: the same
// __host__ __device__ functions, tiled and centred as kernels/fused/agent.cuh does (128 keys a
// tile, the tile's midrange as centre), against the fp64 reference: every exponent within the
// bound E that decides the form, the per-row factor within its share of E, and outputs pooled
// with these weights within the project's tolerance. Random data with printed seeds; sizes 1, 7,
// 129, 4097; far-away keys; bandwidths from 1e-3 (the direct form stays) to 1e30.
#include <attnpool/detail/expanded_score.hpp>
#include <attnpool/detail/scores.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "test_support.hpp"

namespace ad = attnpool::detail;
namespace at = attnpool::test;

namespace {

constexpr std::size_t kTile = 128;  // fused_traits<1, 1>::kTileKeys

struct tile_form {
  ad::d1_centre centre;
  std::vector<ad::d1_expanded_key> keys;
};

// The agent's tile preparation: centre from the valid keys' extremes, then the expanded keys.
tile_form expand_tile(const float* k, std::size_t len, double a) {
  float lo = k[0], hi = k[0];
  for (std::size_t j = 1; j < len; ++j) {
    lo = std::min(lo, k[j]);
    hi = std::max(hi, k[j]);
  }
  tile_form t{ad::d1_centre_of(lo, hi), {}};
  for (std::size_t j = 0; j < len; ++j) t.keys.push_back(ad::d1_expand_key(k[j], t.centre.mu, a));
  return t;
}

// The scale the agent uses: the magnitude of the float score constant.
double agent_scale(double h) {
  return -static_cast<double>(ad::kernel_constant(attnpool::kernel::gaussian, h));
}

struct pooled_case {
  std::size_t n, m;
  double h;
  float key_offset;
  bool expect_all_expanded, expect_none_expanded;
};

class ExpandedD1 : public ::testing::TestWithParam<pooled_case> {};

// Every exponent of a row that takes the form, minus cq, against -a (q - k)^2 in double with the
// exact a: within expanded_d1_error. The centre's radius covers every rounded k'.
TEST_P(ExpandedD1, ExponentsWithinTheBound) {
  const pooled_case c = GetParam();
  const auto p = at::make_problem(c.n, c.m, 1, 1, at::fresh_seed(), c.key_offset, 0);
  SCOPED_TRACE(at::describe(p, c.h));
  const double a = agent_scale(c.h), a_exact = ad::gaussian_log2_scale(c.h);
  double worst = 0.0;
  std::size_t taken = 0, rows = 0;
  for (std::size_t t0 = 0; t0 < p.m; t0 += kTile) {
    const std::size_t len = std::min(kTile, p.m - t0);
    const tile_form t = expand_tile(p.k.data() + t0, len, a);
    for (const auto& key : t.keys) ASSERT_LE(std::fabs(static_cast<double>(key.kc)), t.centre.rk);
    for (std::size_t i = 0; i < p.n; ++i) {
      const ad::d1_expanded_row row = ad::d1_expand_row(p.q[i], t.centre, a);
      // A one-key tile (the tail of 129 or 4097 keys) has radius 0: a query next to that key
      // meets the bound at any h, so the counts below leave such tiles out.
      rows += len > 1;
      if (!row.ok) continue;
      taken += len > 1;
      const double qd = std::fabs(static_cast<double>(p.q[i]) - t.centre.mu);
      const double bound = ad::expanded_d1_error(a, qd, t.centre.rk);
      ASSERT_LE(bound, ad::kExpandedMaxError);
      for (std::size_t j = 0; j < len; ++j) {
        const double diff = static_cast<double>(p.q[i]) - p.k[t0 + j];
        const double exact = -a_exact * diff * diff;
        const double got = static_cast<double>(ad::d1_expanded_exponent(row, t.keys[j])) - row.cq;
        const double err = std::fabs(got - exact);
        worst = std::max(worst, err / bound);
        ASSERT_LE(err, bound) << "row " << i << " key " << t0 + j << " q " << p.q[i] << " k "
                              << p.k[t0 + j] << " mu " << t.centre.mu << " rk " << t.centre.rk;
      }
    }
  }
  std::printf(
      "expanded d=1: h=%g offset=%g: %zu of %zu row tiles expanded, worst error %.3f of "
      "the bound\n",
      c.h, static_cast<double>(c.key_offset), taken, rows, worst);
  if (c.expect_all_expanded) {
    EXPECT_EQ(taken, rows);
  }
  if (c.expect_none_expanded) {
    EXPECT_EQ(taken, 0u);
  }
}

// Outputs pooled with the agent's weights (expanded where the row meets the bound, else the
// direct form the agent falls back to), sums in double so that only the weights are under test,
// against the fp64 oracle with the project's tolerance.
TEST_P(ExpandedD1, PooledOutputsMatchTheReference) {
  const pooled_case c = GetParam();
  const auto p = at::make_problem(c.n, c.m, 1, 1, at::fresh_seed(), c.key_offset, 0);
  SCOPED_TRACE(at::describe(p, c.h));
  const double a = agent_scale(c.h);
  const ad::gaussian_log2_score score{ad::kernel_constant(attnpool::kernel::gaussian, c.h)};
  std::vector<tile_form> tiles;
  for (std::size_t t0 = 0; t0 < p.m; t0 += kTile)
    tiles.push_back(expand_tile(p.k.data() + t0, std::min(kTile, p.m - t0), a));
  std::vector<float> out(p.n);
  for (std::size_t i = 0; i < p.n; ++i) {
    // The reference key: the row's best direct-form score (an attained score, as the agent's).
    float ref = -INFINITY;
    for (std::size_t j = 0; j < p.m; ++j) {
      const float diff = p.q[i] - p.k[j];
      ref = std::max(ref, score(diff * diff));
    }
    double sum = 0.0, dot = 0.0;
    for (std::size_t t = 0; t < tiles.size(); ++t) {
      const ad::d1_expanded_row row = ad::d1_expand_row(p.q[i], tiles[t].centre, a);
      const float f = ad::d1_expanded_factor(row.cq, ref);
      for (std::size_t jj = 0; jj < tiles[t].keys.size(); ++jj) {
        const std::size_t j = t * kTile + jj;
        const float diff = p.q[i] - p.k[j];
        const float w = row.ok ? ad::fast_exp2(ad::d1_expanded_exponent(row, tiles[t].keys[jj])) * f
                               : ad::fast_exp2(ad::sub_rn(score(diff * diff), ref));
        sum += w;
        dot += static_cast<double>(w) * p.v[j];
      }
    }
    out[i] = static_cast<float>(dot / sum);
  }
  const attnpool::pool_params params{c.h};
  const auto want = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
  const double worst = at::expect_matches_reference(p, params, out.data(), 1, want);
  std::printf("expanded d=1 pooled: h=%g offset=%g n=m=%zu: worst error %.3f of the tolerance\n",
              c.h, static_cast<double>(c.key_offset), p.m, worst);
}

std::vector<pooled_case> cases() {
  std::vector<pooled_case> out;
  for (std::size_t s : {1, 7, 129, 4097}) {
    // Data in [0, 1): a R^2 <= 2.89 at h = 0.5 (the benchmark's), so every row is expanded;
    // h = 1e-3 is far past the bound, so none is.
    out.push_back({s, s, 0.5, 0.0f, true, false});
    out.push_back({s, s, 1e-3, 0.0f, false, true});
  }
  for (double h : {0.35, 1.0, 10.0, 1e4}) out.push_back({129, 4097, h, 0.0f, h >= 0.5, false});
  // Keys 1e4 away: the direct form below a huge h, the expanded one (centred) above it.
  out.push_back({129, 4097, 1.0, 1e4f, false, true});
  out.push_back({129, 4097, 1e6, 1e4f, true, false});
  // Extreme bandwidths: every score 0 (the constant underflows), or every score huge.
  out.push_back({7, 129, 1e30, 0.0f, true, false});
  out.push_back({7, 129, 1e-6, 0.0f, false, true});
  return out;
}

INSTANTIATE_TEST_SUITE_P(cases, ExpandedD1, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<pooled_case>& tp) {
                           return "case" + std::to_string(tp.index);
                         });

// The factor 2^-(cq + ref) against double: its share of E (9 u), over the range the agent
// meets (|cq + ref| up to 126) and the first chunk's ref = -inf (inf: the chunk is rebased).
TEST(ExpandedD1Factor, WithinItsShareOfTheBound) {
  const std::uint64_t seed = at::fresh_seed();
  std::printf("seed %llu (replay with ATTNPOOL_TEST_SEED)\n",
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> cq(0.0, 4.0), ref(-120.0, 0.0);
  double worst = 0.0;
  for (int i = 0; i < 100000; ++i) {
    const double c = cq(rng);
    const auto r = static_cast<float>(ref(rng));
    const double want = std::exp2(-(c + r));
    const double err = std::fabs(ad::d1_expanded_factor(c, r) / want - 1.0);
    worst = std::max(worst, err);
    ASSERT_LE(err, 9.0 * 0x1p-24 * std::log(2.0)) << "cq " << c << " ref " << r;
  }
  std::printf("factor: worst relative error %.3g\n", worst);
  EXPECT_TRUE(std::isinf(ad::d1_expanded_factor(1.0, -INFINITY)));
  EXPECT_TRUE(std::isinf(ad::d1_expanded_factor(0.0, -200.0f)));
}

// The bound's edges: exactly the CPU's bar, and NaN or inf distances fail.
TEST(ExpandedD1Bound, Edges) {
  const double a = 1.0;
  const double r_max = std::sqrt((ad::kExpandedMaxError / 0x1p-24 - 9.0) / 6.0 / a);
  EXPECT_TRUE(ad::expanded_d1_ok(a, 0.0, r_max * (1 - 1e-12)));
  EXPECT_FALSE(ad::expanded_d1_ok(a, 0.0, r_max * (1 + 1e-12)));
  EXPECT_FALSE(ad::expanded_d1_ok(a, NAN, 0.0));
  EXPECT_FALSE(ad::expanded_d1_ok(a, INFINITY, 0.0));
  EXPECT_FALSE(ad::expanded_d1_ok(1e200, 1e-100, 0.0));  // slope 2a q' past float
}

}  // namespace
