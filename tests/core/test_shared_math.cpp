// The shared __host__ __device__ maths, checked on the host against std:: functions.
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "test_support.hpp"

namespace ad = attnpool::detail;

TEST(Exp2Poly, RelativeErrorBelow2e7OverTheWholeRange) {
  double worst = 0.0;
  for (float x = ad::kExp2Floor; x <= 0.0f; x += 1.0f / 4096.0f) {
    const double want = std::exp2(static_cast<double>(x));
    worst = std::max(worst, std::fabs(ad::exp2_poly(x) - want) / want);
  }
  // Polynomial fit 9.6e-8 plus one rounding of the exponent reconstruction.
  EXPECT_LT(worst, 2e-7);
}

TEST(Exp2Poly, ExactAtIntegersAndZeroBelowTheFloor) {
  for (int e = -125; e <= 0; ++e) EXPECT_EQ(ad::exp2_poly(static_cast<float>(e)), std::ldexp(1.0f, e));
  EXPECT_EQ(ad::exp2_poly(-125.5f), 0.0f);
  EXPECT_EQ(ad::exp2_poly(-1e30f), 0.0f);
  EXPECT_EQ(ad::exp2_poly(-std::numeric_limits<float>::infinity()), 0.0f);
}

TEST(GaussianScore, FoldsLog2eOver2hSquared) {
  const ad::gaussian_log2_score s{static_cast<float>(-ad::gaussian_log2_scale(2.0))};
  const float q[3] = {1, 2, 3}, k[3] = {2, 0, 3};
  EXPECT_FLOAT_EQ(ad::squared_distance<3>(q, k), 5.0f);
  EXPECT_FLOAT_EQ(ad::squared_distance(q, k, 3), 5.0f);
  EXPECT_NEAR(s(5.0f), -5.0 / 8.0 * 1.4426950408889634, 1e-6);
}

// Streams a row of scores through online_softmax::update with a scalar accumulator.
struct streamed {
  ad::online_softmax state;
  float acc = 0.0f;
  void add(float s, float v) {
    const ad::rescale r = state.update(s);
    acc = acc * r.self + r.other * v;
  }
  void merge(const streamed& o) {
    const ad::rescale r = state.merge(o.state);
    acc = acc * r.self + r.other * o.acc;
  }
  float result() const { return acc * state.inv_sum(); }
};

TEST(OnlineSoftmax, UpdateAndMergeMatchTheTwoPassSoftmax) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> score(-60.0f, 0.0f), value(-1.0f, 1.0f);
  std::vector<float> s(257), v(257);
  for (std::size_t j = 0; j < s.size(); ++j) s[j] = score(rng), v[j] = value(rng);

  double mx = -INFINITY, sum = 0, dot = 0;
  for (float x : s) mx = std::max(mx, double{x});
  for (std::size_t j = 0; j < s.size(); ++j) {
    const double p = std::exp2(s[j] - mx);
    sum += p;
    dot += p * v[j];
  }
  const double want = dot / sum;

  streamed whole;
  for (std::size_t j = 0; j < s.size(); ++j) whole.add(s[j], v[j]);
  EXPECT_NEAR(whole.result(), want, 1e-5);

  // Three uneven parts merged in both groupings: associativity up to rounding.
  streamed a, b, c;
  for (std::size_t j = 0; j < 10; ++j) a.add(s[j], v[j]);
  for (std::size_t j = 10; j < 200; ++j) b.add(s[j], v[j]);
  for (std::size_t j = 200; j < s.size(); ++j) c.add(s[j], v[j]);
  streamed left = a, right = b;
  left.merge(b);
  left.merge(c);
  right.merge(c);
  streamed right_total = a;
  right_total.merge(right);
  EXPECT_NEAR(left.result(), want, 1e-5);
  EXPECT_NEAR(right_total.result(), want, 1e-5);
}

TEST(OnlineSoftmax, EmptyStateIsTheIdentityOfMerge) {
  streamed x, empty;
  x.add(-3.0f, 0.5f);
  x.add(-1.0f, -2.0f);
  streamed y = x;
  y.merge(empty);
  EXPECT_EQ(y.result(), x.result());
  streamed z = empty;
  z.merge(x);
  EXPECT_EQ(z.result(), x.result());
  streamed both_empty;
  both_empty.merge(empty);
  EXPECT_EQ(both_empty.state.sum, 0.0f);
}

TEST(OnlineSoftmax, VeryNegativeScoresStillGiveTheLargestOne) {
  // Every score far below exp2's range: without max-rescaling the sum would underflow to 0.
  streamed x;
  x.add(-1e9f, 1.0f);
  x.add(-1e9f - 4096.0f, 7.0f);
  EXPECT_EQ(x.result(), 1.0f);
}
