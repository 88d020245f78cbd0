// The tensor-core path's arithmetic (detail/tf32_split.hpp) on the CPU, against double: the tf32
// rounding bit for bit against its definition (cvt.rna.tf32.f32: nearest, ties away), the
// big/small split, the 3xTF32 dot product within its float32-level bound (and 1xTF32 past it, so
// that the bound can tell them apart), and the agent's scores and pooled outputs as
// kernels/fused/tc_agent.cuh forms them: block centre = the midrange of the block's 128 queries,
// S = (2a q') . k' in 3xTF32, ew = 2^(-a |k'|^2), reference -a |q'|^2. Random data with printed
// seeds; d = 16, 32, 64 (and d = 9, zero-padded to 16); data near the origin and 1e3 from it.
#include <attnpool/detail/scores.hpp>
#include <attnpool/detail/tf32_split.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace ad = attnpool::detail;
namespace at = attnpool::test;

namespace {

constexpr double kU = 0x1p-24;

std::uint32_t float_bits(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

float bits_float(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// tf32 rounding from its definition, in double: |x| scaled to an integer count of tf32 ulps
// (2^(e - 10) for x in [2^e, 2^(e+1)), 2^-136 for denormals), rounded half away from zero, scaled
// back; inf and NaN keep their 19 high bits.
float tf32_reference(float x) {
  if (!std::isfinite(x)) return bits_float(float_bits(x) & 0xffffe000u);
  if (x == 0.0f) return x;
  const double ax = std::fabs(static_cast<double>(x));
  const double ulp = std::ldexp(1.0, std::max(std::ilogb(ax), -126) - 10);
  const double r = std::floor(ax / ulp + 0.5) * ulp;  // exact: ax / ulp has <= 24 bits
  const double rounded = r > std::numeric_limits<float>::max() ? INFINITY : r;
  return static_cast<float>(std::copysign(rounded, static_cast<double>(x)));
}

TEST(Tf32Round, MatchesTheDefinition) {
  // Ties go away from zero; just below a tie goes down; a carry moves into the exponent.
  EXPECT_EQ(ad::tf32_round(1.0f + 0x1p-11f), 1.0f + 0x1p-10f);
  EXPECT_EQ(ad::tf32_round(-(1.0f + 0x1p-11f)), -(1.0f + 0x1p-10f));
  EXPECT_EQ(ad::tf32_round(1.0f + 0x1p-11f - 0x1p-23f), 1.0f);
  EXPECT_EQ(ad::tf32_round(2.0f - 0x1p-23f), 2.0f);
  EXPECT_TRUE(std::isinf(ad::tf32_round(std::numeric_limits<float>::max())));
  EXPECT_TRUE(std::isinf(ad::tf32_round(INFINITY)));
  EXPECT_TRUE(std::isnan(ad::tf32_round(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(ad::tf32_round(0.0f), 0.0f);
  // Every float of [1, 2) and its negative (one binade: the rule is the same in each), then
  // random bit patterns over every binade, denormals included.
  for (std::uint32_t b = float_bits(1.0f); b < float_bits(2.0f); ++b) {
    const float x = bits_float(b);
    ASSERT_EQ(float_bits(ad::tf32_round(x)), float_bits(tf32_reference(x))) << x;
    ASSERT_EQ(float_bits(ad::tf32_round(-x)), float_bits(tf32_reference(-x))) << x;
  }
  const std::uint64_t seed = at::fresh_seed();
  std::printf("tf32 rounding: seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 4000000; ++i) {
    const float x = bits_float(static_cast<std::uint32_t>(rng()));
    const float r = ad::tf32_round(x);
    ASSERT_EQ(float_bits(r), float_bits(tf32_reference(x))) << x;
    ASSERT_EQ(float_bits(r) & 0x1fffu, 0u) << x;
  }
}

TEST(Tf32Split, CarriesTheFloatTo2ToMinus22) {
  const std::uint64_t seed = at::fresh_seed();
  std::printf("tf32 split: seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> expo(-100, 100);
  double worst = 0.0;
  for (int i = 0; i < 1000000; ++i) {
    const auto x = static_cast<float>(std::ldexp(mant(rng), expo(rng)) * (i % 2 ? -1.0 : 1.0));
    const ad::tf32_pair p = ad::tf32_split(x);
    const double xd = x, big = p.big, small = p.small;
    ASSERT_EQ(static_cast<double>(x - p.big), xd - big) << "x - big is exact, x = " << x;
    ASSERT_LE(std::fabs(small), 0x1p-11 * std::fabs(xd)) << x;
    const double rel = std::fabs(xd - big - small) / std::fabs(xd);
    worst = std::max(worst, rel);
    ASSERT_LE(rel, 0x1p-22) << x;
  }
  std::printf("tf32 split: worst |x - big - small| / |x| = 2^%.2f\n", std::log2(worst));
}

// Vectors of one dot-product case: x and y drawn as the agent's operands are (2a q' and k'),
// at a scale, or centred from data far from the origin.
enum class data_kind { unit, large, centred_far };

struct dot_stats {
  double worst3 = 0.0, worst1 = 0.0;  // |err| / (u sum |x_c y_c|)
};

template <int D>
dot_stats dot_errors(data_kind kind, std::uint64_t seed, int trials) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f), pos(0.0f, 1.0f);
  dot_stats st;
  float x[D], y[D];
  for (int i = 0; i < trials; ++i) {
    for (int c = 0; c < D; ++c) {
      switch (kind) {
        case data_kind::unit:
          x[c] = unit(rng);
          y[c] = unit(rng);
          break;
        case data_kind::large:
          x[c] = 1e6f * unit(rng);
          y[c] = 3e-4f * unit(rng);
          break;
        case data_kind::centred_far: {
          // 1e3 + U(0, 1), centred on 1e3 + 0.5 in float, as the agent centres.
          const float mu = 1000.5f;
          x[c] = (1000.0f + pos(rng)) - mu;
          y[c] = (1000.0f + pos(rng)) - mu;
          break;
        }
      }
    }
    double exact = 0.0, scale = 0.0;
    for (int c = 0; c < D; ++c) {
      exact += static_cast<double>(x[c]) * y[c];  // each product exact in double
      scale += std::fabs(static_cast<double>(x[c]) * y[c]);
    }
    const double e3 = std::fabs(ad::tf32_dot_emulated<D>(x, y) - exact) / (kU * scale);
    const double e1 = std::fabs(ad::tf32_dot_emulated<D, 1>(x, y) - exact) / (kU * scale);
    st.worst3 = std::max(st.worst3, e3);
    st.worst1 = std::max(st.worst1, e1);
  }
  return st;
}

// The bound of the file comment, in units of u sum |x_c y_c|: 12 for the split, 3 D / 8
// roundings of at most (1 + 2^-10) sum |x_c y_c| each.
constexpr double dot_bound(int d) {
  return 12.0 + 3.0 * d / 8.0 * (1.0 + 0x1p-10);
}

template <int D>
void check_dot(data_kind kind, const char* name) {
  const std::uint64_t seed = at::fresh_seed();
  const dot_stats st = dot_errors<D>(kind, seed, 200000);
  std::printf(
      "3xTF32 dot, D=%d, %s, seed %llu: worst error %.2f u sum|x y| (bound %.2f); 1xTF32: "
      "%.0f u sum|x y|\n",
      D, name, static_cast<unsigned long long>(seed), st.worst3, dot_bound(D), st.worst1);
  EXPECT_LE(st.worst3, dot_bound(D)) << "seed " << seed;
  // One mma per step (big . big only) misses about 2^-11 of every product: far past the bound,
  // so the bound tells 3xTF32 from 1xTF32.
  EXPECT_GT(st.worst1, 20.0 * dot_bound(D)) << "seed " << seed;
}

TEST(Tf32Dot, ThreeTermsHaveFloat32LevelError) {
  check_dot<16>(data_kind::unit, "U(-1,1)");
  check_dot<16>(data_kind::large, "1e6 x 3e-4");
  check_dot<16>(data_kind::centred_far, "1e3 + U(0,1) centred");
  check_dot<32>(data_kind::unit, "U(-1,1)");
  check_dot<32>(data_kind::centred_far, "1e3 + U(0,1) centred");
  check_dot<64>(data_kind::unit, "U(-1,1)");
  check_dot<64>(data_kind::large, "1e6 x 3e-4");
  check_dot<64>(data_kind::centred_far, "1e3 + U(0,1) centred");
}

// ---- The fragment layout ----------------------------------------------------------------------

// One warp's k-steps of one m16 x n8 tile, loaded with the agent's indices (tc_a_row,
// tc_a_coord, tc_key_slot, tc_b_offset) and multiplied by the PTX ISA's fragment formulas for
// mma.m16n8k8 .tf32, written out here apart from them: lane 4g + t holds a0 = A[g][t],
// a1 = A[g + 8][t], a2 = A[g][t + 4], a3 = A[g + 8][t + 4], b0 = B[t][g], b1 = B[t + 4][g], and
// gets c_i = C[g + 8 (i >> 1)][2t + (i & 1)]. The values have exact tf32 parts (an integer plus
// a multiple of 2^-14), so every element must equal its row's 3xTF32 dot product exactly.
TEST(Tf32Fragments, TheAgentsIndicesFeedEveryMmaItsOperands) {
  constexpr int D = 32, kSteps = D / 8;
  constexpr int kStride = 2 * D + 16;  // fused_tc_traits<D, DV>::kKeyStride
  const std::uint64_t seed = at::fresh_seed();
  std::printf("fragments: seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> whole(-8, 8);
  const auto value = [&] {
    return static_cast<float>(whole(rng)) + 0x1p-14f * static_cast<float>(whole(rng));
  };
  float q[16][D], k[8][D];
  for (auto& row : q)
    for (float& x : row) x = value();
  for (auto& row : k)
    for (float& x : row) x = value();

  // The agent's staging of the 8 keys (stage()), and every staged slot used once.
  std::vector<float> staged(8 * kStride, std::numeric_limits<float>::quiet_NaN());
  std::vector<int> used(kStride, 0);
  for (int c = 0; c < D; ++c) {
    ++used[ad::tc_key_slot(c)];
    ++used[ad::tc_key_slot(c) + 2];
  }
  for (int slot = 0; slot < 2 * D; ++slot) EXPECT_EQ(used[slot], 1) << "slot " << slot;
  // stage() stores coordinates c and c + 4 (c & 4 == 0) as one float4 at tc_key_slot(c):
  // {big c, big c + 4, small c, small c + 4}, which consume() reads at tc_b_offset.
  for (int c = 0; c < D; ++c) {
    if ((c & 4) != 0) continue;
    EXPECT_EQ(ad::tc_key_slot(c) % 4, 0) << c;
    EXPECT_EQ(ad::tc_key_slot(c + 4), ad::tc_key_slot(c) + 1) << c;
    EXPECT_EQ(ad::tc_key_slot(c), ad::tc_b_offset(c >> 3, c & 3)) << c;
  }
  for (int j = 0; j < 8; ++j)
    for (int c = 0; c < D; ++c) {
      const ad::tf32_pair p = ad::tf32_split(k[j][c]);
      staged[j * kStride + ad::tc_key_slot(c)] = p.big;
      staged[j * kStride + ad::tc_key_slot(c) + 2] = p.small;
    }

  double out[16][8] = {};
  for (int ks = 0; ks < kSteps; ++ks) {
    // The matrices this k-step's mmas see, rebuilt from every lane's registers.
    double ab[16][8], as[16][8], bb[8][8], bs[8][8];
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane >> 2, t = lane & 3;
      float a_big[4], a_small[4];
      for (int r = 0; r < 4; ++r) {  // prepare(): A register r of row tc_a_row
        const ad::tf32_pair p = ad::tf32_split(q[ad::tc_a_row(g, r)][ad::tc_a_coord(ks, t, r)]);
        a_big[r] = p.big;
        a_small[r] = p.small;
      }
      const float* b = &staged[g * kStride + ad::tc_b_offset(ks, t)];  // consume()'s LDS.128
      const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {t, t, t + 4, t + 4};
      for (int r = 0; r < 4; ++r) {
        ab[rows[r]][cols[r]] = a_big[r];
        as[rows[r]][cols[r]] = a_small[r];
      }
      bb[t][g] = b[0];
      bb[t + 4][g] = b[1];
      bs[t][g] = b[2];
      bs[t + 4][g] = b[3];
    }
    for (int i = 0; i < 16; ++i)
      for (int n = 0; n < 8; ++n)
        for (int kk = 0; kk < 8; ++kk)
          out[i][n] += ab[i][kk] * bs[kk][n] + as[i][kk] * bb[kk][n] + ab[i][kk] * bb[kk][n];
  }
  // Each lane's accumulators, where PTX puts them, against the agent's reading of them.
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; ++e) {
      const int row = ad::tc_c_row(g, e), key = ad::tc_c_col(t, e);
      double want = 0.0;
      for (int c = 0; c < D; ++c) {
        const ad::tf32_pair x = ad::tf32_split(q[row][c]), y = ad::tf32_split(k[key][c]);
        want += static_cast<double>(x.big) * y.small + static_cast<double>(x.small) * y.big +
                static_cast<double>(x.big) * y.big;
      }
      ASSERT_EQ(out[g + 8 * (e >> 1)][2 * t + (e & 1)], want) << "lane " << lane << " c" << e;
    }
  }
  // consume()'s LDS.128 of B: the 8 lanes of each phase cover the 32 banks once.
  for (int ks = 0; ks < kSteps; ++ks)
    for (int phase = 0; phase < 4; ++phase) {
      std::vector<int> banks(32, 0);
      for (int lane = 8 * phase; lane < 8 * phase + 8; ++lane)
        for (int w = 0; w < 4; ++w)
          ++banks[((lane >> 2) * kStride + ad::tc_b_offset(ks, lane & 3) + w) % 32];
      for (int b = 0; b < 32; ++b) EXPECT_EQ(banks[b], 1) << "ks " << ks << " phase " << phase;
    }
}

// ---- The agent's scores and outputs -----------------------------------------------------------

constexpr std::size_t kBlockRows = 128;  // fused_tc_traits<D, DV>::kRowsPerBlock

// One block of the agent, as tc_agent.cuh forms it: the centre, the rows' operands and
// references, the keys' operands and weights, and whether the block takes the tensor cores.
template <int D>
struct block_form {
  std::vector<float> mu = std::vector<float>(D, 0.0f);
  std::vector<float> qs, kc;  // rows x D of 2a q', keys x D of k' (zero-padded past d)
  std::vector<float> cq, ew;  // a |q'|^2 per row, 2^(-a |k'|^2) per key
  std::vector<double> q_dist;
  double rk = 0.0;
  bool tc = false;
};

template <int D>
block_form<D> form_block(const at::problem& p, std::size_t row0, std::size_t rows, double a) {
  block_form<D> b;
  const std::size_t ld = p.d + p.pad;
  for (std::size_t c = 0; c < p.d; ++c) {
    float lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = row0; i < row0 + rows; ++i) {
      lo = std::min(lo, p.q[i * ld + c]);
      hi = std::max(hi, p.q[i * ld + c]);
    }
    b.mu[c] = static_cast<float>(0.5 * (static_cast<double>(lo) + hi));
  }
  b.tc = true;
  for (std::size_t i = row0; i < row0 + rows; ++i) {
    double n2 = 0.0;
    for (int c = 0; c < D; ++c) {
      const float qc = static_cast<std::size_t>(c) < p.d ? p.q[i * ld + c] - b.mu[c] : 0.0f;
      n2 += static_cast<double>(qc) * qc;
      b.qs.push_back(static_cast<float>(2.0 * a * static_cast<double>(qc)));
    }
    b.cq.push_back(static_cast<float>(a * n2));
    b.q_dist.push_back(std::sqrt(n2));
  }
  double rk2 = 0.0;
  for (std::size_t j = 0; j < p.m; ++j) {
    double n2 = 0.0;
    for (int c = 0; c < D; ++c) {
      const float kc = static_cast<std::size_t>(c) < p.d ? p.k[j * ld + c] - b.mu[c] : 0.0f;
      n2 += static_cast<double>(kc) * kc;
      b.kc.push_back(kc);
    }
    b.ew.push_back(ad::fast_exp2(static_cast<float>(-a * n2)));
    rk2 = std::max(rk2, n2);
  }
  b.rk = std::sqrt(rk2);
  for (double qd : b.q_dist) b.tc = b.tc && ad::tc_score_ok(a, qd, b.rk, D);
  return b;
}

struct score_case {
  std::size_t n, m, d;
  double h;
  float offset;  // added to queries and keys alike
  bool expect_tc, expect_ffma;
};

at::problem shifted_problem(const score_case& c) {
  at::problem p = at::make_problem(c.n, c.m, c.d, 1, at::fresh_seed(), c.offset, 1);
  const std::size_t ld = p.d + p.pad;
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t k = 0; k < p.d; ++k) p.q[i * ld + k] += c.offset;
  return p;
}

class Tf32Scores : public ::testing::TestWithParam<score_case> {};

template <int D>
void check_scores(const score_case& c) {
  const at::problem p = shifted_problem(c);
  SCOPED_TRACE(at::describe(p, c.h));
  const std::size_t ld = p.d + p.pad;
  const double a = -static_cast<double>(ad::kernel_constant(attnpool::kernel::gaussian, c.h));
  const double a_exact = ad::gaussian_log2_scale(c.h);
  double worst = 0.0, worst1 = 0.0;
  std::size_t tc_blocks = 0, blocks = 0;
  std::vector<float> out(p.n);
  for (std::size_t row0 = 0; row0 < p.n; row0 += kBlockRows) {
    const std::size_t rows = std::min(kBlockRows, p.n - row0);
    const block_form<D> b = form_block<D>(p, row0, rows, a);
    ++blocks;
    tc_blocks += b.tc;
    const ad::gaussian_log2_score score{ad::kernel_constant(attnpool::kernel::gaussian, c.h)};
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t i = row0 + r;
      const double bound = ad::tc_score_error(a, b.q_dist[r], b.rk, D);
      double sum = 0.0, dot = 0.0;
      for (std::size_t j = 0; j < p.m; ++j) {
        double w;
        if (b.tc) {
          const float s = ad::tf32_dot_emulated<D>(&b.qs[r * D], &b.kc[j * D]);
          const float s1 = ad::tf32_dot_emulated<D, 1>(&b.qs[r * D], &b.kc[j * D]);
          double exact = 0.0;
          for (std::size_t k = 0; k < p.d; ++k) {
            const double diff = static_cast<double>(p.q[i * ld + k]) - p.k[j * ld + k];
            exact -= a_exact * diff * diff;
          }
          const double log_ew = std::log2(static_cast<double>(b.ew[j]));
          const double got = s + log_ew - b.cq[r];
          const double err = std::fabs(got - exact);
          worst = std::max(worst, err / bound);
          worst1 = std::max(worst1, std::fabs(s1 + log_ew - b.cq[r] - exact) / bound);
          EXPECT_LE(err, bound) << "row " << i << " key " << j;
          if (err > bound) return;
          // The agent's weight against the reference -cq: 2^S ew.
          w = static_cast<double>(ad::fast_exp2(s)) * b.ew[j];
        } else {
          // The FFMA agent's direct form (against the row's best score, so that w <= 1).
          float d2 = 0.0f;
          for (std::size_t k = 0; k < p.d; ++k) {
            const float diff = p.q[i * ld + k] - p.k[j * ld + k];
            d2 = ad::fma_hd(diff, diff, d2);
          }
          w = std::exp2(static_cast<double>(score(d2)));
        }
        sum += w;
        dot += w * p.v[j * (p.dv + p.pad)];
      }
      out[i] = static_cast<float>(dot / sum);
    }
  }
  std::printf(
      "tc scores D=%d d=%zu n=%zu m=%zu h=%g offset=%g: %zu of %zu blocks on the tensor cores, "
      "worst score error %.3f of the bound (1xTF32: %.1f)\n",
      D, p.d, p.n, p.m, c.h, static_cast<double>(c.offset), tc_blocks, blocks, worst, worst1);
  if (c.expect_tc) {
    EXPECT_EQ(tc_blocks, blocks);
    // 1xTF32 scores miss the same bound (a single pair can be exact: n = m = 1 has q' = 0).
    if (p.n > 1 && p.m > 1) {
      EXPECT_GT(worst1, 1.0);
    }
  }
  if (c.expect_ffma) {
    EXPECT_EQ(tc_blocks, 0u);
  }
  const attnpool::pool_params params{c.h};
  const auto want = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
  const double worst_out = at::expect_matches_reference(p, params, out.data(), 1, want);
  std::printf("  pooled: worst error %.3f of the tolerance\n", worst_out);
}

TEST_P(Tf32Scores, WithinTheBoundAndPooledMatchesTheReference) {
  const score_case c = GetParam();
  if (c.d <= 16) {
    check_scores<16>(c);
  } else if (c.d <= 32) {
    check_scores<32>(c);
  } else {
    check_scores<64>(c);
  }
}

std::vector<score_case> score_cases() {
  std::vector<score_case> out;
  // Data in [0, 1)^d: |q'|, Rk <= sqrt(d) / 2, so a R^2 <= log2(e) d / (2 h^2) = 0.32 at
  // h = 1.5 sqrt(d): every block on the tensor cores; at h = sqrt(d) / 4 none.
  for (std::size_t d : {9, 16, 32, 64}) {
    const double hw = 1.5 * std::sqrt(static_cast<double>(d));
    out.push_back({129, 129, d, hw, 0.0f, true, false});
    out.push_back({129, 129, d, std::sqrt(static_cast<double>(d)) / 4.0, 0.0f, false, true});
  }
  for (std::size_t s : {1, 7, 129, 4097})
    out.push_back({s, s == 4097 ? 1024 : s, 16, 6.0, 0.0f, true, false});
  // 1e3 from the origin: centred, the same bound holds as at the origin.
  out.push_back({257, 257, 16, 6.0, 1000.0f, true, false});
  out.push_back({257, 257, 64, 12.0, 1000.0f, true, false});
  // Near the limit: some blocks on either side.
  out.push_back({513, 513, 32, 5.0, 0.0f, false, false});
  return out;
}

INSTANTIATE_TEST_SUITE_P(cases, Tf32Scores, ::testing::ValuesIn(score_cases()),
                         [](const ::testing::TestParamInfo<score_case>& tp) {
                           return "case" + std::to_string(tp.index);
                         });

}  // namespace
