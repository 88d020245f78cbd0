// The kernel family: every kernel, the empty-support policy and the anisotropic
// bandwidth on the host backends, against the fp64 oracle on fresh random data with printed
// seeds. The shared score functors are checked against their definitions first.
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

namespace ad = attnpool::detail;
using attnpool::backend;
using attnpool::empty_support;
using attnpool::kernel;
using attnpool::test::make_problem;
using attnpool::test::problem;
using attnpool::test::snap_to_grid;

constexpr kernel kAllKernels[] = {kernel::gaussian, kernel::laplacian, kernel::epanechnikov,
                                  kernel::boxcar, kernel::tricube};
constexpr float kInf = std::numeric_limits<float>::infinity();

using attnpool::test::opts_for;

// K(u) from its definition, in double.
double kernel_value(kernel k, double u) {
  switch (k) {
    case kernel::gaussian:
      return std::exp(-u * u / 2.0);
    case kernel::laplacian:
      return std::exp(-u);
    case kernel::epanechnikov:
      return u < 1.0 ? 1.0 - u * u : 0.0;
    case kernel::boxcar:
      return u < 1.0 ? 1.0 : 0.0;
    case kernel::tricube:
      return u < 1.0 ? std::pow(1.0 - u * u * u, 3.0) : 0.0;
  }
  return 0.0;
}

TEST(KernelScores, MatchTheirDefinitions) {
  for (kernel k : kAllKernels) {
    for (double h : {0.5, 1.0, 3.0}) {
      ad::with_kernel_score(k, h, [&](auto score) {
        for (double u : {0.0, 0.1, 0.5, 0.9, 0.999, 1.0, 1.5, 4.0}) {
          const auto r2 = static_cast<float>(u * h * u * h);
          const double want = kernel_value(k, u);
          const double got = std::exp2(static_cast<double>(score(r2)));
          SCOPED_TRACE(std::string(attnpool::to_string(k)) + " h=" + std::to_string(h) +
                       " u=" + std::to_string(u));
          if (want == 0.0) {
            EXPECT_EQ(score(r2), -kInf);  // exactly 0 outside the support, u >= 1 included
          } else {
            // The float score's relative error (a few eps) times |log2 K| + 1: 1e-5 relative;
            // near the edge of a compact support, 1 - u^2 (or 1 - u^3) is off by a few eps
            // absolutely (u^2's rounding), cubed for the tricube: 1e-6 absolute covers both.
            EXPECT_NEAR(got, want, 1e-5 * want + 1e-6) << "score " << score(r2);
          }
        }
      });
    }
  }
}

TEST(KernelScores, Log2PolyIsAccurateOnTheCompactKernelsRange) {
  // Every 7th float of [2^-24, 1] (all of them take 3 s; the bound was measured on all).
  const double eps = std::numeric_limits<float>::epsilon();
  double worst = 0.0;
  float at = 0.0f;
  for (float x = std::ldexp(1.0f, -24); x <= 1.0f;) {
    const double want = std::log2(static_cast<double>(x));
    const double err =
        std::fabs(static_cast<double>(ad::log2_poly(x)) - want) / (eps * (1.0 + std::fabs(want)));
    if (err > worst) worst = err, at = x;
    for (int s = 0; s < 7; ++s) x = std::nextafter(x, 2.0f);
  }
  EXPECT_LE(worst, 1.0) << "at x = " << at;
  EXPECT_EQ(ad::log2_poly(1.0f), 0.0f);
  EXPECT_EQ(ad::log2_poly(0.5f), -1.0f);
}

TEST(KernelScores, OnlineSoftmaxIgnoresMinusInfinity) {
  // Keys outside a compact support stream through update() as -inf: an empty state stays empty
  // (no -inf - -inf = NaN), and a non-empty one is unchanged.
  ad::online_softmax st;
  const ad::rescale r0 = st.update(-kInf);
  EXPECT_TRUE(st.empty());
  EXPECT_EQ(st.sum, 0.0f);
  EXPECT_EQ(r0.other, 0.0f);
  EXPECT_EQ(r0.self, 1.0f);
  st.update(-3.0f);
  const ad::online_softmax before = st;
  const ad::rescale r1 = st.update(-kInf);
  EXPECT_EQ(st.max, before.max);
  EXPECT_EQ(st.sum, before.sum);
  EXPECT_EQ(r1.other, 0.0f);
  // Merging an empty state either way is the identity.
  ad::online_softmax empty;
  const ad::rescale r2 = st.merge(empty);
  EXPECT_EQ(st.sum, before.sum);
  EXPECT_EQ(r2.other, 0.0f);
  ad::online_softmax e2;
  const ad::rescale r3 = e2.merge(before);
  EXPECT_EQ(e2.max, before.max);
  EXPECT_EQ(e2.sum, before.sum);
  EXPECT_EQ(r3.self, 0.0f);
  EXPECT_FALSE(e2.empty());
}

TEST(KernelNames, RoundTrip) {
  for (kernel k : kAllKernels) EXPECT_EQ(attnpool::parse_kernel(attnpool::to_string(k)), k);
  EXPECT_THROW(attnpool::parse_kernel("cosine"), attnpool::invalid_argument);
  EXPECT_TRUE(attnpool::is_compact(kernel::tricube));
  EXPECT_FALSE(attnpool::is_compact(kernel::laplacian));
}

// Runs pool() on backend b into a poisoned, padded output and compares with the oracle. Rows
// the oracle makes NaN (empty_support::nan) must be NaN; every other value finite and within
// the derived tolerance.
void check_kernel_pool(const problem& p, const attnpool::pool_params& params, backend b) {
  attnpool::test::check_pool_against_reference(p, params, b);
}

class HostKernels : public ::testing::TestWithParam<backend> {};

TEST_P(HostKernels, EveryKernelSizesAndDimensions) {
  for (kernel k : kAllKernels) {
    for (std::size_t n : {1, 7, 129, 4097}) {
      for (std::size_t m : {1, 7, 129, 4097}) {
        for (std::size_t d : {1, 3, 5}) {
          // The 4097 x 4097 oracle costs ~1 s: once per kernel, d = 1 (the single-pass path).
          if (n == 4097 && m == 4097 && d != 1) continue;
          const std::size_t dv = n * m > 100000 ? 1 : 3;
          problem p = make_problem(n, m, d, dv, attnpool::test::fresh_seed());
          if (k == kernel::boxcar) snap_to_grid(p);
          // A support covering every pair ([0, 1)^d has diameter sqrt(d)), and a narrow one
          // where most keys weigh exactly 0. Rows a narrow support leaves empty (for small m)
          // must be NaN on both sides (`nearest` is tested on tie-free data below: on the grid
          // equal distances are common, and float and double may order them differently).
          for (double h : {1.5 * std::sqrt(static_cast<double>(d)), 0.3}) {
            attnpool::pool_params params{h};
            params.kernel = k;
            params.empty = empty_support::nan;
            check_kernel_pool(p, params, GetParam());
          }
        }
      }
    }
  }
}

TEST_P(HostKernels, CompactKernelsWeighExactlyZeroOutsideTheSupport) {
  for (kernel k : {kernel::epanechnikov, kernel::boxcar, kernel::tricube}) {
    for (std::size_t d : {1, 2, 7}) {
      problem p = make_problem(129, 700, d, 1, attnpool::test::fresh_seed());
      snap_to_grid(p);
      attnpool::pool_params params{0.3};
      params.kernel = k;
      params.empty = empty_support::nan;
      SCOPED_TRACE(attnpool::test::describe(p, 0.3) + " kernel=" + attnpool::to_string(k));
      std::vector<float> w(p.n * p.m);
      attnpool::attention_weights(p.queries(), p.keys(), {w.data(), p.n, p.m}, params,
                                  opts_for(GetParam()));
      std::size_t nonempty_rows = 0;
      for (std::size_t i = 0; i < p.n; ++i) {
        std::vector<bool> inside(p.m);
        for (std::size_t j = 0; j < p.m; ++j) {
          double u2 = 0.0;
          for (std::size_t c = 0; c < d; ++c) {
            const double diff = double{p.queries()(i, c)} - double{p.keys()(j, c)};
            u2 += diff * diff / 0.09;
          }
          inside[j] = u2 < 1.0;
        }
        if (std::find(inside.begin(), inside.end(), true) == inside.end()) {
          EXPECT_TRUE(std::isnan(w[i * p.m])) << "empty row " << i << " must be NaN";
          continue;
        }
        ++nonempty_rows;
        double sum = 0.0;
        for (std::size_t j = 0; j < p.m; ++j) {
          const float wij = w[i * p.m + j];
          if (!inside[j]) {
            EXPECT_EQ(wij, 0.0f) << "(" << i << ", " << j << ") outside";
          }
          sum += wij;
        }
        EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << i;
      }
      if (d <= 2) {
        EXPECT_GT(nonempty_rows, p.n / 2);  // the test tests something
      }
    }
  }
}

// A 1-d problem laid out for the CPU engine's tiles (1024 keys): tile 0 holds no key inside the
// support (the two-pass path meets a -inf maximum), tile 1 one distant key inside it (the
// running maximum is then low), tile 2 none again (the single-pass path meets -inf scores),
// tile 3 keys much closer (the slack check repeats the tile against its own maximum).
TEST_P(HostKernels, SinglePassSurvivesEmptyTiles) {
  for (kernel k : {kernel::epanechnikov, kernel::boxcar, kernel::tricube, kernel::laplacian}) {
    const std::uint64_t seed = attnpool::test::fresh_seed();
    problem p = make_problem(3, 4096 + 77, 1, 1, seed);
    for (std::size_t j = 0; j < p.m; ++j) {
      float& x = p.k[j * 2];
      const std::size_t tile = j / 1024;
      if (tile == 0 || tile == 2) x = 5.0f + x;                        // outside: |q - k| > 4
      if (tile == 1) x = j == 1500 ? 0.5f + 0.999f * 1.0f : 7.0f + x;  // one key at u ~ 1
      if (tile >= 3) x = 0.25f + 0.5f * x;                             // close keys
    }
    for (float& x : p.q)
      if (std::isfinite(x)) x = 0.5f;
    attnpool::pool_params params{1.0};
    params.kernel = k;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    check_kernel_pool(p, params, GetParam());
    // Without the close keys the rows end on the single distant key.
    problem far = p;
    far.m = 2048;
    check_kernel_pool(far, params, GetParam());
  }
}

// Query row 3 lies 10 away from every key; the others sit among the keys.
problem with_lonely_row(std::uint64_t seed) {
  problem p = make_problem(6, 300, 2, 2, seed);
  p.q[3 * 3 + 0] = 10.0f;
  p.q[3 * 3 + 1] = 10.0f;
  return p;
}

TEST_P(HostKernels, EmptySupportErrorNamesTheRow) {
  const problem p = with_lonely_row(attnpool::test::fresh_seed());
  for (kernel k : {kernel::epanechnikov, kernel::boxcar, kernel::tricube}) {
    attnpool::pool_params params{0.5};
    params.kernel = k;  // params.empty defaults to error
    std::vector<float> out(p.n * p.dv), w(p.n * p.m);
    try {
      attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv}, params,
                     opts_for(GetParam()));
      ADD_FAILURE() << "pool did not throw for an empty support";
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("row 3 has no key inside the support"),
                std::string::npos)
          << e.what();
    }
    try {
      attnpool::attention_weights(p.queries(), p.keys(), {w.data(), p.n, p.m}, params,
                                  opts_for(GetParam()));
      ADD_FAILURE() << "attention_weights did not throw for an empty support";
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos) << e.what();
    }
  }
  // Kernels without a compact support never leave a row empty: the far row gets its nearest
  // keys' values, finite.
  attnpool::pool_params lap{0.5};
  lap.kernel = kernel::laplacian;
  check_kernel_pool(p, lap, GetParam());
}

TEST_P(HostKernels, EmptySupportNanAndNearest) {
  const problem p = with_lonely_row(attnpool::test::fresh_seed());
  for (kernel k : {kernel::epanechnikov, kernel::boxcar, kernel::tricube}) {
    for (empty_support e : {empty_support::nan, empty_support::nearest}) {
      attnpool::pool_params params{0.5};
      params.kernel = k;
      params.empty = e;
      check_kernel_pool(p, params, GetParam());  // row 3 NaN, or compared below
      std::vector<float> out(p.n * p.dv);
      attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv}, params,
                     opts_for(GetParam()));
      if (e == empty_support::nan) {
        for (std::size_t c = 0; c < p.dv; ++c) EXPECT_TRUE(std::isnan(out[3 * p.dv + c]));
        continue;
      }
      // nearest: exactly the value row of the closest key (keys are in [0, 1)^2, the query
      // at (10, 10): the key with the largest x + y, to first order).
      std::size_t best = 0;
      double best_d = INFINITY;
      for (std::size_t j = 0; j < p.m; ++j) {
        const double dx = 10.0 - p.keys()(j, 0), dy = 10.0 - p.keys()(j, 1);
        if (dx * dx + dy * dy < best_d) best_d = dx * dx + dy * dy, best = j;
      }
      for (std::size_t c = 0; c < p.dv; ++c) EXPECT_EQ(out[3 * p.dv + c], p.values()(best, c));
      // The weights row: 1 on that key, 0 elsewhere.
      std::vector<float> w(p.n * p.m);
      attnpool::attention_weights(p.queries(), p.keys(), {w.data(), p.n, p.m}, params,
                                  opts_for(GetParam()));
      for (std::size_t j = 0; j < p.m; ++j) EXPECT_EQ(w[3 * p.m + j], j == best ? 1.0f : 0.0f);
    }
  }
}

TEST_P(HostKernels, AnisotropicMatchesTheRescaledIsotropicProblem) {
  // Powers of two: rescaling the coordinates by 1/h_c is then exact in float, so the rescaled
  // isotropic problem (h = 1) is the same problem, and the two runs agree to rounding.
  for (kernel k : kAllKernels) {
    for (std::size_t d : {1, 2, 3, 6}) {
      problem p = make_problem(129, 1100, d, 2, attnpool::test::fresh_seed());
      if (k == kernel::boxcar) snap_to_grid(p);
      std::vector<double> hs(d);
      for (std::size_t c = 0; c < d; ++c) hs[c] = std::ldexp(1.0, static_cast<int>(c % 3) - 1);
      problem scaled = p;
      for (std::size_t c = 0; c < d; ++c) {
        for (std::size_t i = 0; i < p.n; ++i)
          scaled.q[i * (d + 1) + c] /= static_cast<float>(hs[c]);
        for (std::size_t j = 0; j < p.m; ++j)
          scaled.k[j * (d + 1) + c] /= static_cast<float>(hs[c]);
      }
      attnpool::pool_params aniso{123.0};  // ignored: bandwidths is set
      aniso.kernel = k;
      aniso.bandwidths = hs;
      aniso.empty = empty_support::nearest;
      attnpool::pool_params iso{1.0};
      iso.kernel = k;
      iso.empty = empty_support::nearest;
      SCOPED_TRACE(attnpool::test::describe(p, 0.0) + " kernel=" + attnpool::to_string(k));
      std::vector<float> a(p.n * p.dv), b(p.n * p.dv);
      attnpool::pool(p.queries(), p.keys(), p.values(), {a.data(), p.n, p.dv}, aniso,
                     opts_for(GetParam()));
      attnpool::pool(scaled.queries(), scaled.keys(), scaled.values(), {b.data(), p.n, p.dv}, iso,
                     opts_for(GetParam()));
      for (std::size_t e = 0; e < a.size(); ++e) {
        ASSERT_TRUE(std::isfinite(a[e])) << e;
        EXPECT_NEAR(a[e], b[e], 1e-5 * (1.0 + std::fabs(b[e]))) << "element " << e;
      }
      // And against the oracle, with general (non-power-of-two) bandwidths. (Not the boxcar:
      // with arbitrary h_c a grid no longer keeps u^2 away from the edge of its support.)
      if (k == kernel::boxcar) continue;
      for (std::size_t c = 0; c < d; ++c) hs[c] = 0.3 + 0.7 * static_cast<double>(c);
      check_kernel_pool(p, aniso, GetParam());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Host, HostKernels, ::testing::Values(backend::reference, backend::cpu),
                         attnpool::test::backend_name);

TEST(KernelErrors, AnisotropicBandwidthsAreValidated) {
  const problem p = make_problem(4, 5, 3, 1, 1);
  std::vector<float> out(4);
  auto run = [&](std::vector<double> hs) {
    attnpool::pool_params params;
    params.bandwidths = hs;
    attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), 4, 1}, params);
  };
  auto message = [&](std::vector<double> hs) {
    try {
      run(std::move(hs));
    } catch (const attnpool::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no throw");
  };
  EXPECT_NE(message({1.0, 2.0}).find("one bandwidth per input dimension (d = 3), got 2"),
            std::string::npos);
  EXPECT_NE(message({1.0, -2.0, 1.0}).find("bandwidths[1] must be finite and > 0, got -2"),
            std::string::npos);
  EXPECT_NE(message({1.0, 1.0, NAN}).find("bandwidths[2]"), std::string::npos);
  EXPECT_NO_THROW(run({1.0, 2.0, 3.0}));
}

TEST(KernelErrors, LearningApiIsGaussianOnly) {
  const problem p = make_problem(4, 4, 1, 1, 2);
  std::vector<float> dq(4);
  attnpool::pool_gradients g;
  g.queries = {dq.data(), 4, 1};
  attnpool::pool_params params;
  params.kernel = kernel::epanechnikov;
  try {
    attnpool::pool_backward(p.queries(), p.keys(), p.values(), p.values(), g, params);
    ADD_FAILURE() << "no throw";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kernel = epanechnikov is not supported by the learning"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(
      attnpool::reference::pool_backward(p.queries(), p.keys(), p.values(), p.values(), params),
      attnpool::invalid_argument);
  const std::vector<double> hs = {1.0};
  attnpool::pool_params aniso;
  aniso.bandwidths = hs;
  EXPECT_THROW(attnpool::pool_backward(p.queries(), p.keys(), p.values(), p.values(), g, aniso),
               attnpool::invalid_argument);
}

TEST(KernelErrors, GpuPathsRejectNearestClearly) {
  const problem p = make_problem(4, 5, 1, 1, 3);
  std::vector<float> out(4);
  attnpool::pool_params params;
  params.kernel = kernel::boxcar;
  params.empty = empty_support::nearest;
  for (backend b : {backend::cuda_fused, backend::cuda_unfused}) {
    try {
      attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), 4, 1}, params, opts_for(b));
      ADD_FAILURE() << "no throw";
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("nearest is not implemented on the GPU"),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
