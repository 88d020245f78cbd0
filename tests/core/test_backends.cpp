// Host backends (reference rounded to float, CPU engine) against the fp64 oracle, on fresh random
// data with printed seeds.
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

#include "test_support.hpp"

namespace {

using attnpool::backend;
using attnpool::test::make_problem;
using attnpool::test::problem;

using attnpool::test::opts_for;

// Runs pool() into a NaN-poisoned, padded output and checks it against the oracle.
void check_pool(const problem& p, double h, backend b, unsigned threads = 0) {
  attnpool::test::check_pool_against_reference(p, attnpool::pool_params{h}, b, threads);
}

class HostBackend : public ::testing::TestWithParam<backend> {};

TEST_P(HostBackend, SizesAndDimensions) {
  for (std::size_t n : {1, 7, 129, 4097}) {
    for (std::size_t m : {1, 7, 129, 4097}) {
      for (std::size_t d : {1, 3, 16}) {
        for (std::size_t dv : {1, 4}) {
          // The 4097 x 4097 fp64 oracle costs ~1 s per (d, dv); keep the big square to d = 1
          // and d = 16 with dv = 1, where the CPU engine's d = 1 and generic loops differ.
          if (n == 4097 && m == 4097 && (dv != 1 || d == 3)) continue;
          check_pool(make_problem(n, m, d, dv, attnpool::test::fresh_seed()), 1.0, GetParam());
        }
      }
    }
  }
}

TEST_P(HostBackend, ExtremeBandwidths) {
  for (double h : {1e-3, 1e-2, 0.1, 1.0, 10.0, 1e2, 1e3}) {
    for (std::size_t d : {1, 3, 16}) {
      check_pool(make_problem(129, 1500, d, 2, attnpool::test::fresh_seed()), h, GetParam());
    }
  }
}

TEST_P(HostBackend, FarAwayKeysFollowTheGeneralBound) {
  // Keys 1e4 away from every query. At h = 100 every score is about -5e3: without
  // max-rescaling every exp underflows and the result is 0/0, while float32 still resolves the
  // score differences, so the bound is tight. At h = 1 the scores are about -5e7 and float32
  // knows them only to +-(d + 4) eps * 5e7 ~ 30 in the exponent: the oracle's bound is then
  // loose by necessity, and the test checks finiteness and that bound (the exact nearest-key
  // behaviour is FarAwayKeysGiveTheNearestKeysValue's job).
  for (double h : {100.0, 1.0}) {
    for (std::size_t d : {1, 3}) {
      check_pool(make_problem(7, 129, d, 1, attnpool::test::fresh_seed(), 1e4f), h, GetParam());
      check_pool(make_problem(64, 4097, d, 4, attnpool::test::fresh_seed(), 1e4f), h, GetParam());
    }
  }
}

TEST_P(HostBackend, FarAwayKeysGiveTheNearestKeysValue) {
  // Keys on a unit grid starting 1e4 away: the nearest key's score beats the next by ~1e4, so
  // the answer is exactly that key's value, whatever float32 does to scores of -5e7.
  const std::size_t m = 300;
  std::vector<float> q = {0.0f, 0.25f, 0.5f}, k(m), v(m);
  for (std::size_t j = 0; j < m; ++j) {
    k[j] = 1e4f + static_cast<float>((j * 7919) % m);  // a permutation of the grid
    v[j] = static_cast<float>(j) + 0.5f;
  }
  const auto out = attnpool::pool(q, k, v, attnpool::pool_params{1.0}, opts_for(GetParam()));
  for (float o : out) EXPECT_EQ(o, v[0]) << "the nearest key (1e4 + 0) is index 0";
}

TEST_P(HostBackend, HugeScoresStayFinite) {
  // Keys 1e4 away at h = 1e-3: scores ~ -7e13 in log2 units, whose float ulp is ~8e6. Any
  // unrounded "scale * dist2 - max" (an FMA) would hand the best key 2^(+-1e6) = inf or 0.
  // Two key orders: the nearest key first, and last (so later tiles raise the maximum).
  for (bool nearest_last : {false, true}) {
    for (std::size_t dv : {1, 2}) {
      const std::size_t m = 3000;
      std::vector<float> q = {0.0f, 0.5f, 0.75f}, k(m), v(m * dv);
      std::size_t nearest = 0;
      for (std::size_t j = 0; j < m; ++j) {
        const std::size_t offset = nearest_last ? m - 1 - j : (j * 7919) % m;
        k[j] = 1e4f + static_cast<float>(offset);
        if (offset == 0) nearest = j;
        for (std::size_t c = 0; c < dv; ++c) v[j * dv + c] = static_cast<float>(j + c) + 0.5f;
      }
      const auto out =
          attnpool::pool(q, k, v, 1, attnpool::pool_params{1e-3}, opts_for(GetParam()));
      for (std::size_t i = 0; i < q.size(); ++i)
        for (std::size_t c = 0; c < dv; ++c)
          EXPECT_EQ(out[i * dv + c], v[nearest * dv + c]) << "row " << i << " dv " << dv;
    }
  }
}

TEST_P(HostBackend, CloserKeysInLaterTiles) {
  // Keys sorted from far to near: every later tile of the CPU engine holds a larger maximum than
  // the running one, which forces its single-pass d = 1 path to repeat tiles against the new
  // maximum (and the multi-pass paths to rescale).
  for (std::size_t dv : {1, 3}) {
    problem p = make_problem(5, 5000, 1, dv, attnpool::test::fresh_seed());
    for (std::size_t j = 0; j < p.m; ++j) p.k[j * (1 + p.pad)] = 20.0f * static_cast<float>(p.m - j) / static_cast<float>(p.m);
    check_pool(p, 0.05, GetParam());
  }
}

TEST_P(HostBackend, WeightsMatchTheOracle) {
  for (double h : {1e-2, 1.0, 1e2}) {
    for (std::size_t d : {1, 3}) {
      const problem p = make_problem(33, 2500, d, 1, attnpool::test::fresh_seed());
      SCOPED_TRACE(attnpool::test::describe(p, h));
      const std::size_t ld = p.m + 5;
      std::vector<float> w(p.n * ld);
      attnpool::test::poison(w);
      attnpool::attention_weights(p.queries(), p.keys(), {w.data(), p.n, p.m, ld}, {h},
                                  opts_for(GetParam()));
      const auto ref = attnpool::reference::weights(p.queries(), p.keys(), {h});
      for (std::size_t i = 0; i < p.n; ++i) {
        // Row-level score scale S_i = sum_l w_l |s_l| for the bound below.
        std::vector<double> s(p.m);
        double row_scale = 0.0;
        for (std::size_t j = 0; j < p.m; ++j) {
          double dist2 = 0.0;
          for (std::size_t c = 0; c < p.d; ++c) {
            const double diff = double{p.queries()(i, c)} - double{p.keys()(j, c)};
            dist2 += diff * diff;
          }
          s[j] = dist2 / (2 * h * h);
          row_scale += ref[i * p.m + j] * s[j];
        }
        for (std::size_t j = 0; j < p.m; ++j) {
          // A weight is 2^(s_j - max) / sum: its relative error is the project's 1e-5 for the
          // exp2 (2e-7) and the normalising sum (float sums of 1024-key tiles added in double:
          // ~sqrt(1024) eps = 4e-6 where the loop is not vectorised, as under sanitizers), plus
          // the score errors (d + 4) eps |s_j| of its own score and, through the sum,
          // sum_l w_l (d + 4) eps |s_l|. Weights below 2^-125 of the row maximum flush to 0 by
          // design (kExp2Floor).
          const double want = ref[i * p.m + j];
          const double eps = std::numeric_limits<float>::epsilon();
          const double tol =
              want * (1e-5 + static_cast<double>(p.d + 4) * eps * (s[j] + row_scale)) + 1e-37;
          ASSERT_NEAR(w[i * ld + j], want, tol) << "w(" << i << ", " << j << ")";
        }
      }
    }
  }
}

TEST_P(HostBackend, NoQueriesIsANoOp) {
  const problem p = make_problem(0, 5, 2, 2, 1);
  attnpool::pool(p.queries(), p.keys(), p.values(), {nullptr, 0, 2}, {}, opts_for(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Host, HostBackend, ::testing::Values(backend::reference, backend::cpu),
                         attnpool::test::backend_name);

TEST(CpuEngine, BitwiseIdenticalAcrossRunsAndThreadCounts) {
  const problem p = make_problem(517, 3000, 3, 2, attnpool::test::fresh_seed());
  SCOPED_TRACE(attnpool::test::describe(p, 0.3));
  auto run = [&](unsigned threads) {
    std::vector<float> out(p.n * p.dv);
    attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv}, {0.3},
                   opts_for(backend::cpu, threads));
    return out;
  };
  const auto first = run(1);
  for (unsigned t : {1u, 2u, 3u, 7u, 0u}) {
    const auto again = run(t);
    EXPECT_EQ(0, std::memcmp(first.data(), again.data(), first.size() * sizeof(float)))
        << "threads=" << t;
  }
}

TEST(AveragePool, EveryRowIsTheMeanOfTheValues) {
  const std::vector<float> v = {1, 10, 2, 20, 6, 60};  // 3 x 2
  std::vector<float> out(4 * 2, -1.0f);
  for (backend b : {backend::reference, backend::cpu}) {
    attnpool::average_pool({v.data(), 3, 2}, {out.data(), 4, 2}, opts_for(b));
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_FLOAT_EQ(out[2 * i], 3.0f);
      EXPECT_FLOAT_EQ(out[2 * i + 1], 30.0f);
    }
  }
}

TEST(Backends, AutomaticResolvesToCpuWithoutADevice) {
  if (attnpool::cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(attnpool::resolve_backend(backend::automatic), backend::cpu);
}

TEST(Backends, NamesRoundTrip) {
  for (backend b : {backend::automatic, backend::reference, backend::cpu, backend::cuda_fused,
                    backend::cuda_unfused}) {
    EXPECT_EQ(attnpool::parse_backend(attnpool::to_string(b)), b);
  }
  EXPECT_THROW(attnpool::parse_backend("gpu"), attnpool::invalid_argument);
}

}  // namespace
