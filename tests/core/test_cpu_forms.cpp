// The CPU engine's two score forms, direct -a|q - k|^2 and the expanded dot form
// 2a q'.k' - a|k'|^2 - a|q'|^2 about the keys' mean (src/cpu/engine.cpp derives its error bound):
// each row takes the dot form only where the bound holds, and either way the result is within the
// project's tolerance of the fp64 oracle. Fresh random data, printed seeds.
#include <attnpool/batched.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include "src/cpu/engine.hpp"
#include "src/cpu/tiles.hpp"
#include "test_support.hpp"

#include <attnpool/detail/fast_math.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using attnpool::backend;
using attnpool::pool_params;
using attnpool::test::make_problem;
using attnpool::test::problem;

// Shifts every query and key coordinate by `offset` (pads stay NaN).
void shift(problem& p, float offset) {
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t c = 0; c < p.d; ++c) p.q[i * (p.d + p.pad) + c] += offset;
  for (std::size_t j = 0; j < p.m; ++j)
    for (std::size_t c = 0; c < p.d; ++c) p.k[j * (p.d + p.pad) + c] += offset;
}

std::size_t dot_rows(const problem& p, const pool_params& params) {
  return attnpool::detail::cpu_dot_form_rows(p.queries(), p.keys(), params);
}

// Every compiled dimension, at a bandwidth wide enough that every row meets the bound
// (unit-cube data: |q'| + |k'| <= sqrt(d), and (d + 6) 2^-24 a d <= 2^-19 for h >= 1.5 d), on
// data near the origin and on data 1e3 away from it (the centring is what keeps the form usable).
TEST(CpuForms, DotFormRowsMatchTheReference) {
  for (const std::size_t d : {2u, 3u, 4u, 8u, 16u, 32u, 64u}) {
    for (const float offset : {0.0f, 1000.0f}) {
      for (const auto& [n, m] : {std::pair<std::size_t, std::size_t>{1, 1}, {7, 129}, {129, 7},
                                 {129, 4097}}) {
        problem p = make_problem(n, m, d, 3, attnpool::test::fresh_seed());
        shift(p, offset);
        const pool_params params{.bandwidth = 1.5 * static_cast<double>(d)};
        SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
                     " offset=" + std::to_string(offset));
        EXPECT_EQ(dot_rows(p, params), n);
        attnpool::test::check_pool_against_reference(p, params, backend::cpu);
        attnpool::test::check_pool_against_reference(p, params, backend::cpu, 1);
      }
    }
  }
}

// Per-dimension bandwidths in the dot form: coordinates (x_c - mu_c) / h_c, the isotropic form at
// h = 1. Bandwidths spread over two orders of magnitude across the dimensions (each wide enough
// for the bound on unit-cube data), near the origin and 1e3 away, unmasked and leave-one-out;
// then narrower ones on wider queries, where at d <= 3 some rows take the direct form with the
// weights, in the same call.
TEST(CpuForms, AnisotropicDotFormMatchesTheReference) {
  for (const std::size_t d : {2u, 3u, 16u, 64u}) {
    for (const float offset : {0.0f, 1000.0f}) {
      problem p = make_problem(300, 300, d, 2, attnpool::test::fresh_seed());
      shift(p, offset);
      std::vector<double> hs(d);
      for (std::size_t c = 0; c < d; ++c)
        hs[c] = 1.5 * static_cast<double>(d) * std::pow(10.0, static_cast<double>(c % 3));
      pool_params params{};
      params.bandwidths = hs;
      SCOPED_TRACE(attnpool::test::describe(p, 0.0) + " offset=" + std::to_string(offset));
      EXPECT_EQ(dot_rows(p, params), p.n);
      attnpool::test::check_pool_against_reference(p, params, backend::cpu);
      params.mask = attnpool::mask::leave_one_out;
      attnpool::test::check_pool_against_reference(p, params, backend::cpu, 1);
      // Narrower in every dimension: the queries spread to [-3, 4)^d take either form.
      problem wide = p;
      for (std::size_t i = 0; i < wide.n; ++i)
        for (std::size_t c = 0; c < d; ++c) {
          float& x = wide.q[i * (d + wide.pad) + c];
          x = 7.0f * (x - offset) - 3.0f + offset;
        }
      for (double& h : hs) h /= 4.0;
      pool_params mixed{};
      mixed.bandwidths = hs;
      if (d <= 3) {  // both forms occur (at d >= 16 the bandwidths are still wide enough for all)
        EXPECT_GT(dot_rows(wide, mixed), 0u);
        EXPECT_LT(dot_rows(wide, mixed), wide.n);
      }
      attnpool::test::check_pool_against_reference(wide, mixed, backend::cpu);
    }
  }
}

// Queries spread over [-3, 4)^d around unit-cube keys: the central rows take the dot form, the
// outer ones the direct form, in one call; both within tolerance, for the bandwidths in between.
TEST(CpuForms, MixedRowsInOneCall) {
  for (const std::size_t d : {2u, 3u, 16u}) {
    for (const double h : {0.5, 2.0, 8.0}) {
      problem p = make_problem(2000, 1500, d, 2, attnpool::test::fresh_seed());
      for (std::size_t i = 0; i < p.n; ++i)
        for (std::size_t c = 0; c < d; ++c)
          p.q[i * (d + p.pad) + c] = 7.0f * p.q[i * (d + p.pad) + c] - 3.0f;
      const pool_params params{.bandwidth = h};
      SCOPED_TRACE(attnpool::test::describe(p, h));
      attnpool::test::check_pool_against_reference(p, params, backend::cpu);
      const std::size_t rows = dot_rows(p, params);
      if (d == 3 && h == 2.0) {  // the case picked to mix: both forms must occur
        EXPECT_GT(rows, 0u);
        EXPECT_LT(rows, p.n);
      }
    }
  }
}

// d = 1 in the dot form (one FMA per pair, no running maximum): every row meets the bound on
// unit data at h = 1.5 (7 2^-24 a (|q'| + Rk)^2 <= 2^-19 for a <= 4.5, h >= 0.34), near the origin
// and 1e3 away, unmasked and leave-one-out, one value column (the single pass) and three.
TEST(CpuForms, DotFormAtD1MatchesTheReference) {
  for (const float offset : {0.0f, 1000.0f}) {
    for (const std::size_t dv : {1u, 3u}) {
      for (const auto& [n, m] : {std::pair<std::size_t, std::size_t>{1, 1}, {7, 129}, {129, 7},
                                 {129, 4097}, {3000, 3000}}) {
        problem p = make_problem(n, m, 1, dv, attnpool::test::fresh_seed());
        shift(p, offset);
        pool_params params{.bandwidth = 1.5};
        SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
                     " offset=" + std::to_string(offset));
        EXPECT_EQ(dot_rows(p, params), n);
        attnpool::test::check_pool_against_reference(p, params, backend::cpu);
        if (n == m && n > 1) {
          params.mask = attnpool::mask::leave_one_out;
          attnpool::test::check_pool_against_reference(p, params, backend::cpu, 1);
        }
      }
    }
  }
}

// d = 1 in the direct form: tiles whose keys cannot beat the running maximum by the slack take
// one pass without a maximum (the tile ranges say so). Random keys (every tile spans the data)
// and sorted keys (tight ranges, far tiles bounded far below), bandwidths from 1e-3 to 0.3,
// keys 1e4 away, the compact kernels and the masks, all against the oracle.
TEST(CpuForms, DirectFormAtD1MatchesTheReference) {
  for (const bool sorted : {false, true}) {
    for (const double h : {1e-3, 0.02, 0.3}) {
      for (const float offset : {0.0f, 1e4f}) {
        problem p = make_problem(700, 3000, 1, 1, attnpool::test::fresh_seed());
        shift(p, offset);
        if (sorted) {
          std::vector<float> k(p.m);
          for (std::size_t j = 0; j < p.m; ++j) k[j] = p.k[j * (1 + p.pad)];
          std::sort(k.begin(), k.end());
          for (std::size_t j = 0; j < p.m; ++j) p.k[j * (1 + p.pad)] = k[j];
        }
        SCOPED_TRACE(attnpool::test::describe(p, h) + " offset=" + std::to_string(offset) +
                     (sorted ? " sorted keys" : " random keys"));
        if (h < 0.1) {
          ASSERT_EQ(dot_rows(p, pool_params{.bandwidth = h}), 0u);
        }
        for (const auto kern : {attnpool::kernel::gaussian, attnpool::kernel::laplacian,
                                attnpool::kernel::epanechnikov}) {
          const pool_params params{.bandwidth = h, .kernel = kern};
          if (kern != attnpool::kernel::gaussian && h < 0.02) continue;  // empty supports
          attnpool::test::check_pool_against_reference(p, params, backend::cpu);
        }
        pool_params masked{.bandwidth = h};
        masked.mask = attnpool::mask::valid_length;
        std::vector<std::size_t> lens(p.n);
        for (std::size_t i = 0; i < p.n; ++i) lens[i] = 1 + (i * 7919) % p.m;
        masked.valid_lens = lens;
        attnpool::test::check_pool_against_reference(p, masked, backend::cpu);
      }
    }
  }
  // Leave-one-out needs n = m.
  problem p = make_problem(2100, 2100, 1, 1, attnpool::test::fresh_seed());
  pool_params loo{.bandwidth = 0.01};
  loo.mask = attnpool::mask::leave_one_out;
  attnpool::test::check_pool_against_reference(p, loo, backend::cpu);
}

// d = 1, the scaled direct form (sqrt(a)-scaled centred coordinates, 2 u a R^2 <= 2^-19): on unit
// data at h = 0.25 every row takes it or the dot form; with queries spread over [-3, 4) at
// h = 0.5 the outer rows take the plain direct form, in the same call. Near the origin and 1e3
// away, random and sorted keys, unmasked, valid_length and leave-one-out, one and three value
// columns, against the oracle.
TEST(CpuForms, ScaledFormAtD1MatchesTheReference) {
  for (const bool spread : {false, true}) {
    for (const float offset : {0.0f, 1000.0f}) {
      for (const std::size_t dv : {1u, 3u}) {
        problem p = make_problem(1500, 1500, 1, dv, attnpool::test::fresh_seed());
        if (spread) {
          for (std::size_t i = 0; i < p.n; ++i) {
            p.q[i * (1 + p.pad)] = 7.0f * p.q[i * (1 + p.pad)] - 3.0f;
          }
        }
        if (offset == 0.0f) {  // sorted keys: tight tile ranges
          std::vector<float> k(p.m);
          for (std::size_t j = 0; j < p.m; ++j) k[j] = p.k[j * (1 + p.pad)];
          std::sort(k.begin(), k.end());
          for (std::size_t j = 0; j < p.m; ++j) p.k[j * (1 + p.pad)] = k[j];
        }
        shift(p, offset);
        pool_params params{.bandwidth = spread ? 0.5 : 0.25};
        SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
                     " offset=" + std::to_string(offset));
        const std::size_t scaled =
            attnpool::detail::cpu_scaled_form_rows(p.queries(), p.keys(), params);
        EXPECT_GT(scaled, 0u);
        if (spread) {
          EXPECT_LT(scaled + dot_rows(p, params), p.n);
        } else {
          EXPECT_EQ(scaled + dot_rows(p, params), p.n);
        }
        attnpool::test::check_pool_against_reference(p, params, backend::cpu);
        params.mask = attnpool::mask::leave_one_out;
        attnpool::test::check_pool_against_reference(p, params, backend::cpu, 1);
        params.mask = attnpool::mask::valid_length;
        std::vector<std::size_t> lens(p.n);
        for (std::size_t i = 0; i < p.n; ++i) lens[i] = 1 + (i * 7919) % p.m;
        params.valid_lens = lens;
        attnpool::test::check_pool_against_reference(p, params, backend::cpu);
      }
    }
  }
}

// exp2_poly5 (the d = 1 tiles' exponential) against std::exp2 in double: on every float of the
// outer binades of the reduced range, [-0.5, -0.25) and [0.25, 0.5), where the polynomial's error
// peaks, and on a grid over [-125, 127]; exactly 0 below kExp2Floor, -inf included, exact at the
// integers.
TEST(CpuForms, Exp2Poly5Accuracy) {
  double worst = 0.0;
  const auto check = [&](float x) {
    const double want = std::exp2(static_cast<double>(x));
    worst = std::max(worst, std::fabs(attnpool::detail::exp2_poly5(x) - want) / want);
  };
  for (float x = 0.25f; x < 0.5f; x = std::nextafter(x, 1.0f)) {
    check(x);
    check(-x - 0.25f);
  }
  for (int i = 0; i <= 2520000; ++i) check(-125.0f + static_cast<float>(i) * 1e-4f);
  std::printf("exp2_poly5: max relative error %.3g\n", worst);
  EXPECT_LT(worst, 2.5e-7);
  for (int e = -125; e <= 127; ++e)
    EXPECT_EQ(attnpool::detail::exp2_poly5(static_cast<float>(e)), std::ldexp(1.0f, e));
  EXPECT_EQ(attnpool::detail::exp2_poly5(-125.5f), 0.0f);
  EXPECT_EQ(attnpool::detail::exp2_poly5(-std::numeric_limits<float>::infinity()), 0.0f);
}

// The bound is not a formality: at a narrow bandwidth on wide data no row takes the dot form, and
// the non-Gaussian kernels never do; per-dimension bandwidths take it on scaled coordinates.
TEST(CpuForms, DirectFormWhereTheBoundFails) {
  const problem p = make_problem(129, 129, 16, 1, attnpool::test::fresh_seed());
  EXPECT_EQ(dot_rows(p, pool_params{.bandwidth = 0.05}), 0u);
  EXPECT_EQ(dot_rows(p, pool_params{.bandwidth = 100.0}), p.n);
  EXPECT_EQ(dot_rows(p, pool_params{.bandwidth = 100.0, .kernel = attnpool::kernel::laplacian}),
            0u);
  const std::vector<double> hs(16, 100.0);
  pool_params aniso{.bandwidth = 100.0};
  aniso.bandwidths = hs;
  EXPECT_EQ(dot_rows(p, aniso), p.n);
  const std::vector<double> narrow(16, 0.05);
  aniso.bandwidths = narrow;
  EXPECT_EQ(dot_rows(p, aniso), 0u);
  const problem p5 = make_problem(7, 7, 5, 1, attnpool::test::fresh_seed());  // no compiled tile
  EXPECT_EQ(dot_rows(p5, pool_params{.bandwidth = 100.0}), 0u);
}

// ATTNPOOL_CPU_DOT_FORM=0 turns the form off; the direct form's result agrees within tolerance.
TEST(CpuForms, SwitchTurnsTheDotFormOff) {
  problem p = make_problem(129, 4097, 16, 2, attnpool::test::fresh_seed());
  const pool_params params{.bandwidth = 40.0};
  ASSERT_EQ(dot_rows(p, params), p.n);
  ASSERT_EQ(setenv("ATTNPOOL_CPU_DOT_FORM", "0", 1), 0);
  EXPECT_EQ(dot_rows(p, params), 0u);
  attnpool::test::check_pool_against_reference(p, params, backend::cpu);
  ASSERT_EQ(unsetenv("ATTNPOOL_CPU_DOT_FORM"), 0);
  EXPECT_EQ(dot_rows(p, params), p.n);
}

}  // namespace

namespace {

// The form is chosen per row from the row and the keys alone: rows pooled in chunks, and rows
// under valid_length = m, get the bits of one unmasked call, in a case where both forms occur.
TEST(CpuForms, ChoiceDependsOnlyOnTheRowAndTheKeys) {
  problem p = make_problem(300, 1500, 3, 2, attnpool::test::fresh_seed());
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t c = 0; c < p.d; ++c)
      p.q[i * (p.d + p.pad) + c] = 7.0f * p.q[i * (p.d + p.pad) + c] - 3.0f;
  const pool_params params{.bandwidth = 2.0};
  SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth));
  const std::size_t rows = dot_rows(p, params);
  ASSERT_GT(rows, 0u);
  ASSERT_LT(rows, p.n);
  const auto opts = attnpool::test::opts_for(backend::cpu);
  std::vector<float> whole(p.n * p.dv), pieces(p.n * p.dv), masked(p.n * p.dv);
  attnpool::pool(p.queries(), p.keys(), p.values(), {whole.data(), p.n, p.dv}, params, opts);
  for (std::size_t i0 = 0; i0 < p.n; i0 += 7) {
    const std::size_t rows_here = std::min<std::size_t>(7, p.n - i0);
    attnpool::pool({p.q.data() + i0 * (p.d + p.pad), rows_here, p.d, p.d + p.pad}, p.keys(),
                   p.values(), {pieces.data() + i0 * p.dv, rows_here, p.dv}, params, opts);
  }
  EXPECT_EQ(pieces, whole);
  const std::vector<std::size_t> lens(p.n, p.m);
  pool_params with_mask = params;
  with_mask.mask = attnpool::mask::valid_length;
  with_mask.valid_lens = lens;
  attnpool::pool(p.queries(), p.keys(), p.values(), {masked.data(), p.n, p.dv}, with_mask, opts);
  EXPECT_EQ(masked, whole);
}

// Rows at d >= 2 run in chunks, tile by tile, several rows at a time: the dot form and the direct
// form score a group of rows against each key block, and their value sums are taken a group at a
// time (dv = 5: a four-column and a one-column pass). Every row gets the bits it gets pooled by
// itself and inside a batch, at row counts that leave a group of rows short (129), key counts
// that end a tile on an odd block (2500), and per-row masks (valid_length cut inside a tile,
// leave_one_out); and the masked rows match the oracle.
TEST(CpuForms, MultiRowTilesGiveEachRowItsOwnBits) {
  for (const std::size_t d : {2u, 16u, 64u}) {
    for (const std::size_t dv : {1u, 5u}) {
      // Dot form; direct form (h = 0.1 leaves every row of unit-cube data outside the bound, where
      // 0.3 let a row near the centre of d = 2 data into it).
      for (const double h : {1.5 * static_cast<double>(d), 0.1}) {
        problem p = make_problem(129, 2500, d, dv, attnpool::test::fresh_seed());
        const pool_params params{.bandwidth = h};
        SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth));
        ASSERT_EQ(dot_rows(p, params), h > 1.0 ? p.n : 0u);
        const auto opts = attnpool::test::opts_for(backend::cpu);
        std::vector<float> whole(p.n * p.dv), alone(p.n * p.dv), batched(p.n * p.dv);
        attnpool::pool(p.queries(), p.keys(), p.values(), {whole.data(), p.n, p.dv}, params, opts);
        for (std::size_t i = 0; i < p.n; ++i)
          attnpool::pool({p.q.data() + i * (p.d + p.pad), 1, p.d, p.d + p.pad}, p.keys(),
                         p.values(), {alone.data() + i * p.dv, 1, p.dv}, params, opts);
        EXPECT_EQ(alone, whole);
        const std::vector<std::size_t> qoff{0, p.n}, koff{0, p.m};
        attnpool::pool_batched(p.queries(), p.keys(), p.values(), {batched.data(), p.n, p.dv},
                               qoff, koff, params, opts);
        EXPECT_EQ(batched, whole);
        // The four-row group of the AVX2 clone, forced here on any CPU: the same bits.
        std::vector<float> four(p.n * p.dv);
        ASSERT_EQ(setenv("ATTNPOOL_CPU_DOT_GROUP", "4", 1), 0);
        attnpool::pool(p.queries(), p.keys(), p.values(), {four.data(), p.n, p.dv}, params, opts);
        ASSERT_EQ(unsetenv("ATTNPOOL_CPU_DOT_GROUP"), 0);
        EXPECT_EQ(four, whole);

        pool_params by_length = params;
        by_length.mask = attnpool::mask::valid_length;
        std::vector<std::size_t> lens(p.n);
        for (std::size_t i = 0; i < p.n; ++i) lens[i] = 1 + (i * 977 + 13) % p.m;
        by_length.valid_lens = lens;
        attnpool::test::check_pool_against_reference(p, by_length, backend::cpu);
        attnpool::test::check_pool_against_reference(p, by_length, backend::cpu, 1);
      }
    }
    problem sq = make_problem(1100, 1100, d, 2, attnpool::test::fresh_seed());
    pool_params loo{.bandwidth = 1.5 * static_cast<double>(d)};
    loo.mask = attnpool::mask::leave_one_out;
    SCOPED_TRACE(attnpool::test::describe(sq, loo.bandwidth));
    attnpool::test::check_pool_against_reference(sq, loo, backend::cpu);
  }
}

// Calls at d >= 2 whose packed copies would pass a few MiB pack the keys and values per tile and
// chunk of rows instead of once (the call's memory stays its inputs'): pool, pool_batched and
// pool_partial give the bits of the whole-call packing, in the dot and the direct form, masked
// by length, and at m = 40000, d = 16 (where the size alone picks per-tile packing) match the
// oracle.
TEST(CpuForms, PackingPerTileGivesTheWholeCallsBits) {
  const auto run = [](const char* packing, const auto& call) {
    EXPECT_EQ(setenv("ATTNPOOL_CPU_TILE_PACKING", packing, 1), 0);
    const std::vector<float> out = call();
    EXPECT_EQ(unsetenv("ATTNPOOL_CPU_TILE_PACKING"), 0);
    return out;
  };
  const auto opts = attnpool::test::opts_for(backend::cpu);
  for (const std::size_t d : {2u, 16u}) {
    for (const std::size_t dv : {1u, 3u}) {
      for (const double h : {1.5 * static_cast<double>(d), 0.1}) {
        problem p = make_problem(45, 2500, d, dv, attnpool::test::fresh_seed());
        pool_params params{.bandwidth = h};
        SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth));
        std::vector<std::size_t> lens(p.n);
        for (std::size_t i = 0; i < p.n; ++i) lens[i] = 1 + (i * 977 + 13) % p.m;
        for (const bool masked : {false, true}) {
          params.mask = masked ? attnpool::mask::valid_length : attnpool::mask::none;
          params.valid_lens =
              masked ? std::span<const std::size_t>(lens) : std::span<const std::size_t>{};
          const auto pool = [&] {
            std::vector<float> out(p.n * p.dv);
            attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv}, params,
                           opts);
            return out;
          };
          EXPECT_EQ(run("1", pool), run("0", pool)) << "pool, masked " << masked;
          if (masked) continue;
          const auto batched = [&] {  // two problems: keys [0, 1000) and [1000, m)
            std::vector<float> out(p.n * p.dv);
            const std::vector<std::size_t> qoff{0, 20, p.n}, koff{0, 1000, p.m};
            attnpool::pool_batched(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv}, qoff,
                                   koff, params, opts);
            return out;
          };
          EXPECT_EQ(run("1", batched), run("0", batched)) << "pool_batched";
          const auto partial = [&] {
            const attnpool::partial_states st =
                attnpool::pool_partial(p.queries(), p.keys(), p.values(), params, opts);
            std::vector<float> out(st.max);
            out.insert(out.end(), st.sum.begin(), st.sum.end());
            out.insert(out.end(), st.acc.begin(), st.acc.end());
            return out;
          };
          EXPECT_EQ(run("1", partial), run("0", partial)) << "pool_partial";
        }
      }
    }
  }
  problem big = make_problem(9, 40000, 16, 1, attnpool::test::fresh_seed());
  const pool_params params{.bandwidth = 24.0};
  SCOPED_TRACE(attnpool::test::describe(big, params.bandwidth));
  attnpool::test::check_pool_against_reference(big, params, backend::cpu);
  std::vector<float> by_size(big.n), whole(big.n);
  attnpool::pool(big.queries(), big.keys(), big.values(), {by_size.data(), big.n, 1}, params, opts);
  run("0", [&] {
    attnpool::pool(big.queries(), big.keys(), big.values(), {whole.data(), big.n, 1}, params, opts);
    return whole;
  });
  EXPECT_EQ(by_size, whole);
}

}  // namespace

namespace {

// The clone the loader picked is the best one this CPU supports (the resolver's own test), and
// it is named, so that a benchmark or a bug report can say which code ran.
TEST(CpuClones, NamesTheCloneInUse) {
  const std::string clone = attnpool::detail::cpu_engine_clone();
  std::printf("CPU engine clone in use: %s\n", clone.c_str());
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(ATTNPOOL_NO_MULTIVERSIONING)
  __builtin_cpu_init();
  const char* want = __builtin_cpu_supports("x86-64-v4")   ? "x86-64-v4"
                     : __builtin_cpu_supports("x86-64-v3") ? "x86-64-v3"
                                                           : "default";
  EXPECT_EQ(clone, want);
#else
  EXPECT_EQ(clone, "none");
#endif
}

// dot_cols_rows (the backward pass's dp = dout . v for several keys at once): each row's sums
// are the bits that row gets alone, on the AVX-512 tile (where it runs) and the AVX2 one, for
// every group size and tail, and within float rounding of the double sums.
TEST(CpuForms, ColumnRowsGiveEachRowItsOwnBits) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> nd;
  for (std::size_t cols : {1, 3, 16}) {
    for (std::size_t len : {1, 15, 16, 17, 1000}) {
      const std::size_t stride = len + 5, t0 = 2;
      std::vector<float> bt(cols * stride);
      for (float& x : bt) x = nd(gen);
      std::vector<std::vector<float>> coef(9, std::vector<float>(cols));
      for (auto& c : coef)
        for (float& x : c) x = nd(gen);
      for (bool wide : {false, true}) {
        if (wide && !attnpool::detail::cpu_wide_tiles()) continue;  // no AVX-512 here
        for (std::size_t rows = 1; rows <= 9; ++rows) {
          SCOPED_TRACE("seed " + std::to_string(seed) + " cols " + std::to_string(cols) + " len " +
                       std::to_string(len) + " rows " + std::to_string(rows) +
                       (wide ? " wide" : " narrow"));
          std::vector<const float*> cp(rows);
          std::vector<std::vector<float>> out(rows, std::vector<float>(len)), alone(out);
          std::vector<float*> op(rows);
          for (std::size_t r = 0; r < rows; ++r) {
            cp[r] = coef[r].data();
            op[r] = out[r].data();
          }
          attnpool::detail::dot_cols_rows(cp.data(), rows, bt.data(), stride, cols, t0, len, wide,
                                          op.data());
          for (std::size_t r = 0; r < rows; ++r) {
            float* a = alone[r].data();
            attnpool::detail::dot_cols_rows(&cp[r], 1, bt.data(), stride, cols, t0, len, wide, &a);
            for (std::size_t t = 0; t < len; ++t) {
              ASSERT_EQ(out[r][t], alone[r][t]) << "row " << r << " query " << t;
              double ref = 0.0, mag = 0.0;
              for (std::size_t c = 0; c < cols; ++c) {
                ref += static_cast<double>(coef[r][c]) * bt[c * stride + t0 + t];
                mag += std::abs(static_cast<double>(coef[r][c]) * bt[c * stride + t0 + t]);
              }
              EXPECT_NEAR(out[r][t], ref, 1e-6 * static_cast<double>(cols) * mag + 1e-30);
            }
          }
        }
      }
    }
  }
}

}  // namespace
