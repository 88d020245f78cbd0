// The fused GPU agent's expanded d = 1 score (detail/expanded_score.hpp) on the CPU: the same
// __host__ __device__ functions, tiled and centred as kernels/fused/agent.cuh does (256 keys a
// tile, the tile's midrange as centre), against the fp64 reference: every exponent within the
// bound E that decides the form, the per-row factor within its share of E, and outputs pooled
// with these weights within the project's tolerance. Random data with printed seeds; sizes 1, 7,
// 129, 4097; far-away keys; bandwidths from 1e-3 (the direct form stays) to 1e30.
// And the masked agent's key walk (detail::key_range::in_tile, detail::tile_keys), driven as
// fused_agent::consume_masked drives it: every key a row sees is counted exactly once and no
// other, whole chunks it sees entirely take the unmasked chunk, and a split's range is global.
#include <attnpool/detail/exp2_emulated.hpp>
#include <attnpool/detail/expanded_score.hpp>
#include <attnpool/detail/mask.hpp>
#include <attnpool/detail/scores.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace ad = attnpool::detail;
namespace at = attnpool::test;

namespace {

constexpr std::size_t kTile = 256;  // fused_expanded_traits<1, 1>::kTileKeys
// Every 8th key of a tile takes the FMA-pipe exp2 (kExpandedChunk / kExpandedEmulatedExp2).
constexpr std::size_t kEmulatedEvery = 8;

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

// Outputs pooled with the agent's weights (expanded where the row meets the bound, every 8th
// exp2 on the FMA pipe, else the direct form the agent falls back to), sums in double so that
// only the weights are under test, against the fp64 oracle with the project's tolerance.
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
        const float x = ad::d1_expanded_exponent(row, tiles[t].keys[jj]);
        const float e =
            jj % kEmulatedEvery == kEmulatedEvery - 1 ? ad::exp2_fma(x) : ad::fast_exp2(x);
        const float w = row.ok ? e * f : ad::fast_exp2(ad::sub_rn(score(diff * diff), ref));
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

// ---- the masked fast path's key walk -------------------------------------------------------

constexpr int kMaskTile = 128;  // fused_traits<1, 1>::kTileKeys
constexpr int kMaskChunk = 16;  // fused_traits<1, 1>::kChunk

struct walk_counts {
  std::size_t clean = 0, masked = 0, tiles = 0;
};

// One thread's rows of one block over the keys [key_begin, key_end) of its split, as
// fused_agent::run and consume_masked walk them: the tile loop ends at the block's largest limit
// (block_bound); clean runs count every key of their chunks as seen, the chunk between runs
// counts what sees() says. seen[r][j - key_begin] counts how often row r took key j.
walk_counts masked_walk(const std::vector<ad::key_range>& rows, std::size_t key_begin,
                        std::size_t key_end, std::size_t block_bound,
                        std::vector<std::vector<int>>& seen) {
  walk_counts w;
  const std::size_t end = std::min(key_end, block_bound);
  for (std::size_t tile0 = key_begin; tile0 < end; tile0 += kMaskTile) {
    ++w.tiles;
    const int valid = static_cast<int>(std::min<std::size_t>(kMaskTile, end - tile0));
    std::vector<ad::tile_keys> tk;
    for (const auto& r : rows) tk.push_back(r.in_tile(tile0, valid));
    int j0 = 0;
    while (j0 < valid) {
      int stop = valid;
      for (const auto& t : tk) stop = std::min(stop, t.clean_end(j0, kMaskChunk));
      for (; j0 < stop; j0 += kMaskChunk) {
        ++w.clean;
        for (std::size_t r = 0; r < rows.size(); ++r)
          for (int j = j0; j < j0 + kMaskChunk; ++j) ++seen[r][tile0 + j - key_begin];
      }
      bool any = false;
      for (const auto& t : tk) any = any || j0 < t.limit;
      if (!any) break;
      ++w.masked;
      for (std::size_t r = 0; r < rows.size(); ++r)
        for (int j = j0; j < j0 + kMaskChunk; ++j)
          if (tk[r].sees(j)) ++seen[r][tile0 + j - key_begin];
      j0 += kMaskChunk;
    }
  }
  return w;
}

struct walk_case {
  attnpool::mask kind;
  std::size_t n, m, keys_per_split;
  int rows_per_thread;  // fused_traits' kRowsPerThread: 1 (d = dv = 1) or 2
};

void PrintTo(const walk_case& c, std::ostream* os) {
  *os << attnpool::to_string(c.kind) << " n=" << c.n << " m=" << c.m
      << " keys_per_split=" << c.keys_per_split << " rows_per_thread=" << c.rows_per_thread;
}

class MaskedWalk : public ::testing::TestWithParam<walk_case> {};

// Every row of every block (threads of 8 rows apart, as row0 + r * kThreads) over every split:
// the keys taken are exactly those mask_rule::sees names, each once; leave_one_out runs at most
// one masked chunk per row and tile beyond a partial tile's last chunk.
TEST_P(MaskedWalk, TakesExactlyTheKeysTheRuleSees) {
  const walk_case c = GetParam();
  const std::uint64_t seed = at::fresh_seed();
  std::printf("seed %llu (replay with ATTNPOOL_TEST_SEED)\n",
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> lens(c.n);
  // Random counts, and counts on chunk and tile edges.
  constexpr std::size_t kEdges[] = {1, 15, 16, 17, 127, 128, 129, 256};
  for (std::size_t i = 0; i < c.n; ++i)
    lens[i] = std::min(c.m, i % 3 == 0 ? kEdges[(i / 3) % std::size(kEdges)] : 1 + rng() % c.m);
  const ad::mask_rule rule{c.kind, lens.data()};
  constexpr std::size_t kThreads = 8;
  const std::size_t rows_per_block = kThreads * static_cast<std::size_t>(c.rows_per_thread);
  std::size_t masked = 0, bound = 0;
  for (std::size_t block0 = 0; block0 < c.n; block0 += rows_per_block) {
    for (std::size_t t = 0; t < kThreads; ++t) {
      std::vector<std::size_t> ids;
      std::vector<ad::key_range> rows;
      for (int r = 0; r < c.rows_per_thread; ++r) {
        const std::size_t i = block0 + t + static_cast<std::size_t>(r) * kThreads;
        // Rows past n see nothing, as in fused_agent::load_queries.
        rows.push_back(i < c.n ? rule.row(i, ad::kNoKey) : ad::key_range{0, ad::kNoKey});
        ids.push_back(i);
      }
      // The block's loop bound is the largest limit of all its rows, not this thread's.
      std::size_t block_bound = 0;
      for (std::size_t i = block0; i < std::min(c.n, block0 + rows_per_block); ++i)
        block_bound = std::max(block_bound, rule.row(i, ad::kNoKey).limit);
      for (std::size_t kb = 0; kb < c.m; kb += c.keys_per_split) {
        const std::size_t ke = std::min(c.m, kb + c.keys_per_split);
        std::vector<std::vector<int>> seen(rows.size(), std::vector<int>(ke - kb, 0));
        const walk_counts w = masked_walk(rows, kb, ke, block_bound, seen);
        masked += w.masked;
        bound += w.tiles * static_cast<std::size_t>(c.rows_per_thread) + 1;
        for (int r = 0; r < c.rows_per_thread; ++r) {
          const std::size_t i = ids[static_cast<std::size_t>(r)];
          for (std::size_t j = kb; j < ke; ++j) {
            const int want = i < c.n && rule.sees(i, j) ? 1 : 0;
            ASSERT_EQ(seen[static_cast<std::size_t>(r)][j - kb], want)
                << "row " << i << " key " << j << " split [" << kb << ", " << ke << ")";
          }
        }
      }
    }
  }
  if (c.kind == attnpool::mask::leave_one_out) {
    EXPECT_LE(masked, bound);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MaskedWalk,
    ::testing::Values(walk_case{attnpool::mask::leave_one_out, 2, 2, 2, 1},
                      walk_case{attnpool::mask::leave_one_out, 300, 300, 300, 1},
                      walk_case{attnpool::mask::leave_one_out, 300, 300, 300, 2},
                      walk_case{attnpool::mask::leave_one_out, 1000, 1000, 129, 1},
                      walk_case{attnpool::mask::leave_one_out, 1000, 1000, 128, 2},
                      walk_case{attnpool::mask::valid_length, 1, 1, 1, 1},
                      walk_case{attnpool::mask::valid_length, 7, 4097, 4097, 1},
                      walk_case{attnpool::mask::valid_length, 300, 300, 300, 2},
                      walk_case{attnpool::mask::valid_length, 129, 4097, 4097, 2},
                      walk_case{attnpool::mask::valid_length, 129, 4097, 100, 1},
                      walk_case{attnpool::mask::valid_length, 1000, 1000, 333, 2}),
    [](const ::testing::TestParamInfo<walk_case>& tp) {
      return "case" + std::to_string(tp.index);
    });

// A tile's part of a key range at the edges: before, inside and past the limit; the skipped key
// below the tile, inside it, on its last key, past it, and none.
TEST(MaskedWalk, InTileEdges) {
  const ad::key_range loo{ad::kNoKey, 300};
  EXPECT_EQ(loo.in_tile(256, 128).limit, 128);
  EXPECT_EQ(loo.in_tile(256, 128).skip, 44);
  EXPECT_EQ(loo.in_tile(0, 128).skip, -1);
  EXPECT_EQ(loo.in_tile(384, 16).skip, -1);  // the skipped key lies below the tile
  EXPECT_EQ(loo.in_tile(173, 128).skip, 127);
  EXPECT_EQ(loo.in_tile(172, 128).skip, -1);  // just past the tile
  const ad::key_range vl{200, ad::kNoKey};
  EXPECT_EQ(vl.in_tile(128, 128).limit, 72);
  EXPECT_EQ(vl.in_tile(128, 50).limit, 50);  // the tile's valid keys cap it
  EXPECT_EQ(vl.in_tile(200, 128).limit, 0);
  EXPECT_EQ(vl.in_tile(1000, 128).limit, 0);
  EXPECT_EQ(vl.in_tile(0, 128).skip, -1);
  // clean_end: limit 72 -> chunks [0, 64) clean; a skipped key at 40 ends the run at 32 when
  // it lies ahead, and not once it is behind.
  const ad::tile_keys t{72, 40};
  EXPECT_EQ(t.clean_end(0, 16), 32);
  EXPECT_EQ(t.clean_end(48, 16), 64);
  EXPECT_EQ((ad::tile_keys{128, -1}.clean_end(0, 16)), 128);
  EXPECT_EQ((ad::tile_keys{0, -1}.clean_end(0, 16)), 0);
  EXPECT_TRUE(t.sees(71));
  EXPECT_FALSE(t.sees(72));
  EXPECT_FALSE(t.sees(40));
}

}  // namespace
