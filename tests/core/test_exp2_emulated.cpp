// The FMA-pipe exp2 (detail/exp2_emulated.hpp) against std::exp2 in double: the polynomial over
// every float of the reduced range [-1/2, 1/2] (about 2.1e9 inputs, exhaustive because the
// result is 2^n * p(f) exactly, so the whole function's error is p's error at some float f),
// and the whole function on the integers, a full binade, random inputs and the clamp's edges.
#include <attnpool/detail/exp2_emulated.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>
#include <algorithm>

#include "test_support.hpp"

namespace ad = attnpool::detail;

namespace {

float bits_float(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// The largest relative error of exp2_reduced<Degree> over the floats with bit patterns
// [lo, hi) (lo, hi multiples of kBlock inside one binade each block) and their negatives.
// The double reference is std::exp2, anchored once per block of kBlock consecutive floats:
// within a binade the floats are f0 + k ulp, and 2^(f0 + k ulp) = 2^f0 * 2^(k ulp) with both
// factors std::exp2 in double (the second from a per-binade table), so the reference is off by
// a few double roundings (< 1e-15 relative, nothing next to the 1e-7 measured) and the loop
// needs no library call: it vectorises. Compiled for AVX2 + FMA too (chosen at load time), where
// std::fma is one instruction. About 1 s per 1e9 floats on the 2-core EPYC.
constexpr int kBlock = 1024;

template <int Degree>
__attribute__((target_clones("arch=x86-64-v3", "default"))) double worst_block(
    std::uint32_t b0, double anchor, const double* table, const double* inv_table) {
  const double inv_anchor = 1.0 / anchor;
  // The errors first (this loop vectorises), then their maximum (a max reduction over doubles
  // would not, without -ffast-math).
  double err[kBlock];
  for (int k = 0; k < kBlock; ++k) {
    const float f = bits_float(b0 + static_cast<std::uint32_t>(k));
    const double pos = static_cast<double>(ad::exp2_reduced<Degree>(f)) * (inv_anchor * inv_table[k]);
    const double neg = static_cast<double>(ad::exp2_reduced<Degree>(-f)) * (anchor * table[k]);
    const double a = std::fabs(pos - 1.0), b = std::fabs(neg - 1.0);
    err[k] = a > b ? a : b;
  }
  double worst = 0.0;
  for (int k = 0; k < kBlock; ++k) worst = err[k] > worst ? err[k] : worst;
  return worst;
}

template <int Degree>
double worst_reduced(std::uint32_t lo, std::uint32_t hi) {
  double worst = 0.0;
  std::vector<double> table(kBlock), inv_table(kBlock);
  for (std::uint32_t binade = lo >> 23; binade <= (hi - 1) >> 23; ++binade) {
    // ulp of this binade (biased exponent 0 holds the denormals, same ulp as exponent 1).
    const double ulp = std::ldexp(1.0, static_cast<int>(binade == 0 ? 1 : binade) - 150);
    for (int k = 0; k < kBlock; ++k) {
      table[k] = std::exp2(k * ulp);
      inv_table[k] = 1.0 / table[k];
    }
    const std::uint32_t first = std::max(lo, binade << 23);
    const std::uint32_t last = std::min(hi, (binade + 1) << 23);
    for (std::uint32_t b0 = first; b0 < last; b0 += kBlock) {
      const double anchor = std::exp2(static_cast<double>(bits_float(b0)));
      worst = std::max(worst, worst_block<Degree>(b0, anchor, table.data(), inv_table.data()));
    }
  }
  return worst;
}

constexpr std::uint32_t kHalfBits = 0x3f000000u;  // 0.5f, the start of its binade

// Every float of [-1/2, 1/2]: the binades below 1/2, then 1/2 itself.
template <int Degree>
double worst_over_reduced_range() {
  const double half = std::max(std::fabs(ad::exp2_reduced<Degree>(0.5f) / std::sqrt(2.0) - 1.0),
                               std::fabs(ad::exp2_reduced<Degree>(-0.5f) * std::sqrt(2.0) - 1.0));
  return std::max(half, worst_reduced<Degree>(0, kHalfBits));
}

}  // namespace

// The chosen degree, every float of [-1/2, 1/2].
TEST(Exp2Emulated, ChosenDegreeExhaustiveOverTheReducedRange) {
  const double worst = worst_over_reduced_range<ad::kExp2EmulatedDegree>();
  std::printf("exp2_reduced<%d>: max relative error %.3e over every float in [-1/2, 1/2]\n",
              ad::kExp2EmulatedDegree, worst);
  RecordProperty("max_relative_error", std::to_string(worst));
  EXPECT_LE(worst, ad::exp2_minimax<ad::kExp2EmulatedDegree>::kMaxRelError);
  // As good as the MUFU's ex2.approx (2^-22), so the accuracy tests' 1e-5 does not move.
  EXPECT_LT(worst, std::ldexp(1.0, -22));
}

// Degree 4, the cheaper candidate, measured the same way and held to its own bound.
TEST(Exp2Emulated, DegreeFourExhaustiveOverTheReducedRange) {
  const double worst = worst_over_reduced_range<4>();
  std::printf("exp2_reduced<4>: max relative error %.3e over every float in [-1/2, 1/2]\n", worst);
  RecordProperty("max_relative_error", std::to_string(worst));
  EXPECT_LE(worst, ad::exp2_minimax<4>::kMaxRelError);
  EXPECT_GE(worst, 0.9 * ad::exp2_minimax<4>::kFitError);  // the fit's error is really there
}

// The anchored reference of worst_reduced against std::exp2 called per float, on the largest
// binade's first 2^16 floats: the same maximum to 1e-12 (the test's own machinery is checked).
TEST(Exp2Emulated, AnchoredReferenceAgreesWithStdExp2PerFloat) {
  const std::uint32_t lo = 0x3e800000u, hi = lo + (1u << 16);  // [1/4, 1/4 + 2^16 ulp)
  double naive = 0.0;
  for (std::uint32_t b = lo; b < hi; ++b) {
    for (const float f : {bits_float(b), -bits_float(b)}) {
      const double want = std::exp2(static_cast<double>(f));
      naive = std::max(naive, std::fabs(ad::exp2_reduced<5>(f) - want) / want);
    }
  }
  EXPECT_NEAR(worst_reduced<5>(lo, hi), naive, 1e-12);
}

TEST(Exp2Emulated, ExactAtZeroAndTheIntegers) {
  EXPECT_EQ(ad::exp2_fma(0.0f), 1.0f);
  EXPECT_EQ(ad::exp2_fma(-0.0f), 1.0f);
  for (int e = -126; e <= 127; ++e)
    EXPECT_EQ(ad::exp2_fma(static_cast<float>(e)), std::ldexp(1.0f, e)) << "2^" << e;
}

// The reduction and the exponent add: every float of [1, 2) and of [-2, -1) (the rounding of
// x + 1.5 * 2^23 at its ties included), then random x over the whole range.
TEST(Exp2Emulated, WholeFunctionMatchesStdExp2) {
  const double bound = ad::exp2_minimax<ad::kExp2EmulatedDegree>::kMaxRelError;
  double worst = 0.0;
  for (std::uint32_t b = 0x3f800000u; b < 0x40000000u; ++b) {
    for (const float x : {bits_float(b), -bits_float(b)}) {
      const double want = std::exp2(static_cast<double>(x));
      worst = std::max(worst, std::fabs(ad::exp2_fma(x) - want) / want);
    }
  }
  const std::uint64_t seed = attnpool::test::fresh_seed();
  std::printf("seed %llu (replay with ATTNPOOL_TEST_SEED)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> x_of(-126.0f, 127.0f);
  for (int i = 0; i < 1000000; ++i) {
    const float x = x_of(rng);
    const double want = std::exp2(static_cast<double>(x));
    const double err = std::fabs(ad::exp2_fma(x) - want) / want;
    if (err > bound) ADD_FAILURE() << "x = " << x << ": relative error " << err;
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, bound);
}

// Outside [-126, 127]: the smallest normal below (never a denormal, never negative), 2^127
// above, and for +inf and NaN too, so that the lazy rescale's limit test still sends such a
// chunk to the rebase (it does for MUFU.EX2's inf and NaN).
TEST(Exp2Emulated, ClampsOutsideTheRange) {
  const float tiny = std::numeric_limits<float>::min();  // 2^-126
  const float inf = std::numeric_limits<float>::infinity();
  for (const float x : {-126.0f, -126.25f, -127.0f, -150.0f, -1e30f, -inf})
    EXPECT_EQ(ad::exp2_fma(x), tiny) << "x = " << x;
  const float top = std::ldexp(1.0f, 127);
  for (const float x : {128.0f, 1e30f, inf, std::numeric_limits<float>::quiet_NaN()})
    EXPECT_EQ(ad::exp2_fma(x), top) << "x = " << x;
  // Just below the upper clamp the result is 2^127.x, finite.
  EXPECT_TRUE(std::isfinite(ad::exp2_fma(127.0f)));
  EXPECT_NEAR(ad::exp2_fma(-125.75f) / std::exp2(-125.75), 1.0, 2e-7);
}
