// pool_batched against per-problem reference::pool and per-problem pool(); pool_partial +
// merge_partials against the unsharded engine.
#include <attnpool/batched.hpp>
#include <attnpool/cuda.hpp>
#include <attnpool/multi_gpu.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using attnpool::backend;
using attnpool::const_view;
using attnpool::mutable_view;
using attnpool::test::make_problem;
using attnpool::test::opts_for;
using attnpool::test::problem;

// B problems concatenated into dense buffers (ld = d, dv), with their offsets.
struct batch {
  std::size_t d = 0, dv = 0;
  std::vector<problem> parts;
  std::vector<float> q, k, v;
  std::vector<std::size_t> qoff{0}, koff{0};

  const_view queries() const { return {q.data(), qoff.back(), d}; }
  const_view keys() const { return {k.data(), koff.back(), d}; }
  const_view values() const { return {v.data(), koff.back(), dv}; }
};

void append_rows(std::vector<float>& dst, const_view a) {
  for (std::size_t i = 0; i < a.rows; ++i) dst.insert(dst.end(), a.row(i), a.row(i) + a.cols);
}

// on_grid: coordinates on the 1/64 grid (snap_to_grid), for compact kernels against the oracle.
batch make_batch(const std::vector<std::pair<std::size_t, std::size_t>>& sizes, std::size_t d,
                 std::size_t dv, bool on_grid = false) {
  batch b;
  b.d = d;
  b.dv = dv;
  for (auto [n, m] : sizes) {
    b.parts.push_back(make_problem(n, m, d, dv, attnpool::test::fresh_seed()));
    if (on_grid) attnpool::test::snap_to_grid(b.parts.back());
    const problem& p = b.parts.back();
    append_rows(b.q, p.queries());
    append_rows(b.k, p.keys());
    append_rows(b.v, p.values());
    b.qoff.push_back(b.qoff.back() + n);
    b.koff.push_back(b.koff.back() + m);
  }
  return b;
}

std::vector<float> run_batched(const batch& b, const attnpool::pool_params& params,
                               const attnpool::options& opts) {
  std::vector<float> out(b.qoff.back() * b.dv);
  attnpool::test::poison(out);
  attnpool::pool_batched(b.queries(), b.keys(), b.values(), {out.data(), b.qoff.back(), b.dv},
                         b.qoff, b.koff, params, opts);
  return out;
}

// Every (n_b, m_b) in {0, 1, 7, 129, 1500}^2 (m_b = 0 only with n_b = 0), interleaved.
std::vector<std::pair<std::size_t, std::size_t>> mixed_sizes() {
  return attnpool::test::mixed_problem_sizes(1500);
}

class BatchedBackend : public ::testing::TestWithParam<backend> {};

TEST_P(BatchedBackend, MixedSizesMatchTheReferencePerProblem) {
  for (std::size_t d : {1, 3}) {
    for (std::size_t dv : {1, 2}) {
      const batch b = make_batch(mixed_sizes(), d, dv);
      for (double h : {0.1, 1.0}) {
        const attnpool::pool_params params{h};
        const std::vector<float> out = run_batched(b, params, opts_for(GetParam()));
        for (std::size_t p = 0; p < b.parts.size(); ++p) {
          const problem& pr = b.parts[p];
          if (pr.n == 0) continue;
          SCOPED_TRACE("problem " + std::to_string(p) + ": " + attnpool::test::describe(pr, h));
          const auto ref = attnpool::reference::pool(pr.queries(), pr.keys(), pr.values(), params);
          attnpool::test::expect_matches_reference(pr, params, out.data() + b.qoff[p] * dv, dv,
                                                   ref);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Host, BatchedBackend,
                         ::testing::Values(backend::reference, backend::cpu),
                         attnpool::test::backend_name);

TEST(Batched, CpuIsBitwiseSeparatePoolCallsForAnyThreadCount) {
  for (std::size_t d : {1, 2, 5}) {
    const batch b = make_batch(mixed_sizes(), d, 3);
    const attnpool::pool_params params{0.3};
    const std::vector<float> one = run_batched(b, params, opts_for(backend::cpu, 1));
    for (unsigned t : {2u, 3u, 8u}) {
      const std::vector<float> many = run_batched(b, params, opts_for(backend::cpu, t));
      EXPECT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
          << "d=" << d << " threads=" << t;
    }
    for (std::size_t p = 0; p < b.parts.size(); ++p) {
      const problem& pr = b.parts[p];
      if (pr.n == 0) continue;
      std::vector<float> sep(pr.n * pr.dv);
      attnpool::pool(pr.queries(), pr.keys(), pr.values(), {sep.data(), pr.n, pr.dv}, params,
                     opts_for(backend::cpu, 1));
      EXPECT_EQ(0, std::memcmp(sep.data(), one.data() + b.qoff[p] * pr.dv,
                               sep.size() * sizeof(float)))
          << "problem " << p << " d=" << d;
    }
  }
}

TEST(Batched, CompactKernelsAndEmptySupportNameTheProblem) {
  const batch b = make_batch({{7, 129}, {3, 1}}, 2, 1);
  attnpool::pool_params params{1e-3};
  params.kernel = attnpool::kernel::epanechnikov;
  try {
    run_batched(b, params, opts_for(backend::cpu));
    FAIL() << "expected invalid_argument";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("of problem 0"), std::string::npos) << e.what();
  }
  params.empty = attnpool::empty_support::nearest;
  const std::vector<float> out = run_batched(b, params, opts_for(backend::cpu));
  for (std::size_t p = 0; p < 2; ++p) {
    const problem& pr = b.parts[p];
    const auto ref = attnpool::reference::pool(pr.queries(), pr.keys(), pr.values(), params);
    attnpool::test::expect_matches_reference(pr, params, out.data() + b.qoff[p], 1, ref);
  }
}

TEST(Batched, ErrorsNameTheArgumentAndTheProblem) {
  const batch b = make_batch({{3, 4}, {2, 5}}, 1, 1);
  std::vector<float> out(5);
  auto call = [&](std::vector<std::size_t> qo, std::vector<std::size_t> ko,
                  attnpool::options opts = opts_for(backend::cpu),
                  attnpool::pool_params params = {}) {
    attnpool::pool_batched(b.queries(), b.keys(), b.values(), {out.data(), 5, 1}, qo, ko, params,
                           opts);
  };
  auto expect_error = [&](auto&& f, const std::string& words) {
    try {
      f();
      ADD_FAILURE() << "expected invalid_argument mentioning '" << words << "'";
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  EXPECT_NO_THROW(call({0, 3, 5}, {0, 4, 9}));
  expect_error([&] { call({0, 3, 5}, {0, 9}); }, "B + 1");
  expect_error([&] { call({1, 3, 5}, {0, 4, 9}); }, "query_offsets[0] must be 0");
  expect_error([&] { call({0, 4, 3, 5}, {0, 4, 4, 9}); }, "problem 1 has query_offsets[1] = 4 >");
  expect_error([&] { call({0, 3, 4}, {0, 4, 9}); }, "queries.rows (5)");
  expect_error([&] { call({0, 3, 5}, {0, 4, 8}); }, "keys.rows (9)");
  expect_error([&] { call({0, 3, 5}, {0, 9, 9}); }, "problem 1 has 2 queries but no keys");
  expect_error([&] { call({}, {}); }, "B + 1 >= 1");
  expect_error([&] { call({0, 3, 5}, {0, 4, 9}, opts_for(backend::cuda_unfused)); },
               "backend cuda_unfused is not implemented");
  attnpool::pool_params loo;
  loo.mask = attnpool::mask::leave_one_out;
  expect_error(
      [&] {
        call({0, 3, 5}, {0, 4, 9}, opts_for(backend::cpu), loo);
      },
      "problem 0 has n_b = 3 and m_b = 4");
  expect_error([&] { call({0, 3, 5}, {0, 4, 9}, opts_for(backend::cpu), {-1.0}); }, "bandwidth");
  // Problems with no queries may have no keys; a batch of nothing is a no-op.
  EXPECT_NO_THROW(attnpool::pool_batched(const_view{}, const_view{}, const_view{}, mutable_view{},
                                         std::vector<std::size_t>{0, 0},
                                         std::vector<std::size_t>{0, 0}));
}

// ---- masks in batches ----------------------------------------------------------------------

const attnpool::kernel kAllKernels[] = {attnpool::kernel::gaussian, attnpool::kernel::laplacian,
                                        attnpool::kernel::epanechnikov, attnpool::kernel::boxcar,
                                        attnpool::kernel::tricube};

// Random counts in [1, m_b] per row of each problem, some at the ends of the range.
std::vector<std::size_t> batch_valid_lens(const batch& b, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> lens;
  for (const problem& p : b.parts) {
    for (std::size_t i = 0; i < p.n; ++i) {
      const std::size_t pick = rng() % 8;
      lens.push_back(pick == 0 ? 1 : pick == 1 ? p.m : 1 + rng() % p.m);
    }
  }
  return lens;
}

// Problem p's share of a batch's params: its rows' valid_lens.
attnpool::pool_params problem_params(const attnpool::pool_params& params, const batch& b,
                                     std::size_t p) {
  attnpool::pool_params one = params;
  if (params.mask == attnpool::mask::valid_length)
    one.valid_lens = params.valid_lens.subspan(b.qoff[p], b.qoff[p + 1] - b.qoff[p]);
  return one;
}

// Each problem of a masked batch is bitwise its own masked pool() call on the CPU engine (for
// any thread count), and within the oracle's tolerance on the CPU and reference backends.
TEST(BatchedMasks, EachProblemIsItsOwnMaskedPool) {
  using attnpool::mask;
  const std::vector<std::pair<std::size_t, std::size_t>> by_length = {
      {1, 1}, {7, 129}, {0, 0}, {129, 7}, {0, 3}, {1, 4097}, {129, 129}, {7, 1}, {129, 4097}};
  const std::vector<std::pair<std::size_t, std::size_t>> same_set = {
      {7, 7}, {0, 0}, {2, 2}, {129, 129}, {0, 0}, {4097, 4097}, {3, 3}};
  double worst = 0.0;
  for (mask mk : {mask::valid_length, mask::leave_one_out}) {
    for (std::size_t d : {1, 3}) {
      const std::size_t dv = d == 1 ? 1 : 2;
      // Every kernel, the boxcar included, against the oracle: on the grid, no key at an edge.
      const batch b = make_batch(mk == mask::valid_length ? by_length : same_set, d, dv, true);
      const std::uint64_t seed = attnpool::test::fresh_seed();
      std::printf("masked batch: mask=%s d=%zu problem seeds", attnpool::to_string(mk), d);
      for (const problem& p : b.parts)
        std::printf(" %llu", static_cast<unsigned long long>(p.seed));
      std::printf(", valid_lens seed %llu\n", static_cast<unsigned long long>(seed));
      const std::vector<std::size_t> lens = batch_valid_lens(b, seed);
      for (attnpool::kernel kern : kAllKernels) {
        attnpool::pool_params params{0.3};
        params.kernel = kern;
        params.empty = attnpool::empty_support::nan;
        params.mask = mk;
        if (mk == mask::valid_length) params.valid_lens = lens;
        SCOPED_TRACE(std::string("mask=") + attnpool::to_string(mk) +
                     " kernel=" + attnpool::to_string(kern) + " d=" + std::to_string(d));
        const std::vector<float> one = run_batched(b, params, opts_for(backend::cpu, 1));
        const std::vector<float> many = run_batched(b, params, opts_for(backend::cpu, 3));
        const std::vector<float> refb = run_batched(b, params, opts_for(backend::reference));
        EXPECT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)));
        for (std::size_t p = 0; p < b.parts.size(); ++p) {
          const problem& pr = b.parts[p];
          if (pr.n == 0) continue;
          SCOPED_TRACE("problem " + std::to_string(p) + ": " + attnpool::test::describe(pr, 0.3));
          const attnpool::pool_params pp = problem_params(params, b, p);
          std::vector<float> sep(pr.n * dv);
          attnpool::pool(pr.queries(), pr.keys(), pr.values(), {sep.data(), pr.n, dv}, pp,
                         opts_for(backend::cpu, 1));
          EXPECT_EQ(
              0, std::memcmp(sep.data(), one.data() + b.qoff[p] * dv, sep.size() * sizeof(float)));
          const auto ref = attnpool::reference::pool(pr.queries(), pr.keys(), pr.values(), pp);
          worst = std::max(worst, attnpool::test::expect_matches_reference(
                                      pr, pp, one.data() + b.qoff[p] * dv, dv, ref));
          attnpool::test::expect_matches_reference(pr, pp, refb.data() + b.qoff[p] * dv, dv, ref);
        }
      }
    }
  }
  std::printf("worst masked batch error: %.3g of the tolerance\n", worst);
}

// empty_support::nearest under a mask picks the nearest key the row sees in its own problem.
TEST(BatchedMasks, NearestKeepsToTheVisibleKeysOfTheProblem) {
  const batch b = make_batch({{7, 129}, {0, 0}, {129, 7}}, 2, 1);
  const std::vector<std::size_t> lens = batch_valid_lens(b, b.parts[0].seed);
  attnpool::pool_params params{1e-3};
  params.kernel = attnpool::kernel::boxcar;
  params.empty = attnpool::empty_support::nearest;
  params.mask = attnpool::mask::valid_length;
  params.valid_lens = lens;
  const std::vector<float> out = run_batched(b, params, opts_for(backend::cpu));
  for (std::size_t p : {0, 2}) {
    const problem& pr = b.parts[p];
    const attnpool::pool_params pp = problem_params(params, b, p);
    const auto ref = attnpool::reference::pool(pr.queries(), pr.keys(), pr.values(), pp);
    attnpool::test::expect_matches_reference(pr, pp, out.data() + b.qoff[p], 1, ref);
  }
  // empty_support::error leaves out untouched; the CPU engine names the row in its problem (the
  // reference backend names it within the problem only, as reference::pool does).
  params.empty = attnpool::empty_support::error;
  std::vector<float> untouched(b.qoff.back(), 5.0f);
  for (backend be : {backend::cpu, backend::reference}) {
    try {
      attnpool::pool_batched(b.queries(), b.keys(), b.values(),
                             {untouched.data(), b.qoff.back(), 1}, b.qoff, b.koff, params,
                             opts_for(be));
      ADD_FAILURE() << "expected invalid_argument on " << attnpool::to_string(be);
    } catch (const attnpool::invalid_argument& e) {
      const std::string words = be == backend::cpu ? "of problem 0" : "has no key inside";
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
    for (float x : untouched) EXPECT_EQ(x, 5.0f);
  }
}

TEST(BatchedMasks, ErrorsNameTheArgumentTheProblemAndTheValue) {
  const batch b = make_batch({{3, 3}, {2, 5}}, 1, 1);
  std::vector<float> out(5);
  auto expect_error = [&](const attnpool::pool_params& params, backend be,
                          const std::string& words) {
    try {
      attnpool::pool_batched(b.queries(), b.keys(), b.values(), {out.data(), 5, 1}, b.qoff, b.koff,
                             params, opts_for(be));
      ADD_FAILURE() << "expected invalid_argument mentioning '" << words << "'";
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  attnpool::pool_params params;
  params.mask = attnpool::mask::valid_length;
  const std::vector<std::size_t> short_lens{1, 2, 3, 1}, beyond{1, 2, 3, 5, 6}, zero{1, 0, 3, 1, 1};
  params.valid_lens = short_lens;
  expect_error(params, backend::cpu,
               "pool_batched: params.valid_lens must hold one count per "
               "query row of the whole batch (sum n_b = 5), got 4");
  params.valid_lens = beyond;
  expect_error(params, backend::cpu,
               "valid_lens[4] = 6 (row 1 of problem 1) is outside [1, m_b "
               "= 5]");
  params.valid_lens = zero;
  expect_error(params, backend::reference, "valid_lens[1] = 0 (row 1 of problem 0)");
  const std::vector<std::size_t> ok{1, 2, 3, 5, 5};
  params.valid_lens = ok;
  EXPECT_NO_THROW(attnpool::pool_batched(b.queries(), b.keys(), b.values(), {out.data(), 5, 1},
                                         b.qoff, b.koff, params, opts_for(backend::cpu)));
  expect_error(params, backend::cuda_fused,
               "pool_batched: params.mask = valid_length is not supported in batches or shards "
               "on the GPU yet");
  params.mask = attnpool::mask::leave_one_out;
  expect_error(params, backend::cpu,
               "pool_batched: mask leave_one_out needs as many queries as "
               "keys in every problem (the same set), but problem 1 has "
               "n_b = 2 and m_b = 5");
  const batch one_key = make_batch({{2, 2}, {1, 1}}, 1, 1);
  try {
    attnpool::pool_batched(one_key.queries(), one_key.keys(), one_key.values(), {out.data(), 3, 1},
                           one_key.qoff, one_key.koff, params, opts_for(backend::cpu));
    ADD_FAILURE() << "expected invalid_argument";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("leaves row 2 (row 0 of problem 1) with no key (m_b = 1)"),
              std::string::npos)
        << e.what();
  }
}

// ---- sharded keys --------------------------------------------------------------------------

std::vector<attnpool::partial_states> shard(const problem& p, std::size_t shards,
                                            const attnpool::pool_params& params) {
  std::vector<attnpool::partial_states> out;
  for (std::size_t s = 0; s < shards; ++s) {
    const std::size_t k0 = p.m * s / shards, k1 = p.m * (s + 1) / shards;
    const const_view k = p.keys(), v = p.values();
    out.push_back(attnpool::pool_partial(p.queries(), {k.row(k0), k1 - k0, k.cols, k.ld},
                                         {v.row(k0), k1 - k0, v.cols, v.ld}, params,
                                         opts_for(backend::cpu)));
  }
  return out;
}

// Tolerance: both results come from the same float32 engine and differ only in where the keys
// are split (tile and shard boundaries) and so in the grouping of the float sums and in the
// rescale factors 2^(max_a - max_b) (exp2_poly, relative error <= 9.6e-8) at each merge. A
// rescale error on one side of a merge reweights two partial means against each other, moving
// the output by at most that relative error times sum_j w_j |v_j - out| <= 2 sum_j w_j |v_j|;
// the fma of the merged accumulators adds ~2 eps32 of the same scale. With at most S - 1 = 6
// shard merges plus the tile merges (m = 1500: 2 tiles) that is below ~2e-6 in the worst case,
// and the grouping of the tile sums (<= 1024 terms in 16 lanes) stays far below that for
// random data; we hold it to 4e-6 relative of sum_j w_j |v_j| (from the fp64 oracle).
TEST(Sharded, MergedShardsMatchTheUnshardedEngine) {
  double worst = 0.0;
  for (std::size_t d : {1, 3}) {
    for (std::size_t dv : {1, 3}) {
      const problem p = make_problem(129, 1500, d, dv, attnpool::test::fresh_seed());
      for (double h : {0.05, 1.0}) {
        for (auto kern : {attnpool::kernel::gaussian, attnpool::kernel::tricube}) {
          attnpool::pool_params params{h};
          params.kernel = kern;
          params.empty = attnpool::empty_support::nan;
          SCOPED_TRACE(attnpool::test::describe(p, h) + " kernel=" + attnpool::to_string(kern));
          std::vector<float> whole(p.n * dv);
          attnpool::pool(p.queries(), p.keys(), p.values(), {whole.data(), p.n, dv}, params,
                         opts_for(backend::cpu));
          const auto ref = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
          for (std::size_t shards : {1, 2, 3, 7}) {
            const auto parts = shard(p, shards, params);
            std::vector<float> merged(p.n * dv), again(p.n * dv);
            attnpool::merge_partials(parts, {merged.data(), p.n, dv}, params);
            attnpool::merge_partials(shard(p, shards, params), {again.data(), p.n, dv}, params);
            EXPECT_EQ(0, std::memcmp(merged.data(), again.data(), merged.size() * sizeof(float)))
                << "shards=" << shards << " not deterministic";
            for (std::size_t idx = 0; idx < merged.size(); ++idx) {
              if (std::isnan(whole[idx])) {  // a compact kernel's empty row: NaN on both sides
                EXPECT_TRUE(std::isnan(merged[idx])) << "shards=" << shards << " idx=" << idx;
                continue;
              }
              const double tol = 4e-6 * ref.abs_scale[idx] + 1e-30;
              const double err = std::fabs(static_cast<double>(merged[idx]) - whole[idx]);
              worst = std::max(worst, err / tol);
              EXPECT_LE(err, tol) << "shards=" << shards << " idx=" << idx << " merged "
                                  << merged[idx] << " whole " << whole[idx];
            }
          }
        }
      }
    }
  }
  std::printf("worst sharded error: %.3g of the tolerance (4e-6 relative)\n", worst);
}

// Masked shards: consecutive key ranges [bounds[s], bounds[s + 1]), each given its share of the
// mask (valid_length: the global count clamped to the shard; leave_one_out: its key offset).
std::vector<attnpool::partial_states> masked_shards(const problem& p,
                                                    const std::vector<std::size_t>& bounds,
                                                    const attnpool::pool_params& params,
                                                    unsigned threads) {
  std::vector<attnpool::partial_states> out;
  const const_view k = p.keys(), v = p.values();
  for (std::size_t s = 0; s + 1 < bounds.size(); ++s) {
    const std::size_t k0 = bounds[s], k1 = bounds[s + 1];
    std::vector<std::size_t> share;
    attnpool::pool_params sp = params;
    if (params.mask == attnpool::mask::valid_length) {
      for (std::size_t len : params.valid_lens) share.push_back(std::clamp(len, k0, k1) - k0);
      sp.valid_lens = share;
    }
    out.push_back(attnpool::pool_partial(p.queries(), {k.row(k0), k1 - k0, k.cols, k.ld},
                                         {v.row(k0), k1 - k0, v.cols, v.ld}, sp,
                                         opts_for(backend::cpu, threads), k0));
  }
  return out;
}

// Merged masked shards against the single masked pool() (the tolerance of the unmasked test
// above: the mask only removes keys from the sums) and against the fp64 oracle. The splits put
// one-key shards first, so that a row skips the only key of a shard (leave_one_out) and sees
// none of many shards (valid_length: the empty state, the merge's identity).
TEST(ShardedMasks, MergedShardsMatchTheMaskedPool) {
  using attnpool::mask;
  double worst = 0.0, worst_ref = 0.0;
  for (std::size_t d : {1, 3}) {
    const std::size_t dv = d == 1 ? 1 : 3;
    const std::size_t m = 1500;
    problem p = make_problem(m, m, d, dv, attnpool::test::fresh_seed());
    attnpool::test::snap_to_grid(p);  // the boxcar against the oracle: no key at an edge
    const std::uint64_t seed = attnpool::test::fresh_seed();
    std::printf("masked shards: d=%zu problem seed %llu, valid_lens seed %llu\n", d,
                static_cast<unsigned long long>(p.seed), static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    std::vector<std::size_t> lens(p.n);
    for (std::size_t& len : lens) len = rng() % 4 == 0 ? 1 + rng() % 3 : 1 + rng() % m;
    const std::vector<std::vector<std::size_t>> splits = {{0, m},
                                                          {0, 1, 2, 3, 700, m},
                                                          {0, 1, 4, 129, 1000, 1499, m},
                                                          {0, 214, 428, 642, 857, 1071, 1285, m}};
    for (mask mk : {mask::valid_length, mask::leave_one_out}) {
      for (attnpool::kernel kern : kAllKernels) {
        attnpool::pool_params params{kern == attnpool::kernel::gaussian ? 0.05 : 0.3};
        params.kernel = kern;
        params.empty = attnpool::empty_support::nan;
        params.mask = mk;
        if (mk == mask::valid_length) params.valid_lens = lens;
        SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
                     " mask=" + attnpool::to_string(mk) + " kernel=" + attnpool::to_string(kern));
        std::vector<float> whole(p.n * dv);
        attnpool::pool(p.queries(), p.keys(), p.values(), {whole.data(), p.n, dv}, params,
                       opts_for(backend::cpu));
        const auto ref = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
        for (const std::vector<std::size_t>& bounds : splits) {
          SCOPED_TRACE("shards=" + std::to_string(bounds.size() - 1));
          const auto parts = masked_shards(p, bounds, params, 2);
          std::vector<float> merged(p.n * dv), again(p.n * dv);
          attnpool::merge_partials(parts, {merged.data(), p.n, dv}, params);
          attnpool::merge_partials(masked_shards(p, bounds, params, 1), {again.data(), p.n, dv},
                                   params);
          EXPECT_EQ(0, std::memcmp(merged.data(), again.data(), merged.size() * sizeof(float)));
          for (std::size_t idx = 0; idx < merged.size(); ++idx) {
            if (std::isnan(whole[idx])) {
              EXPECT_TRUE(std::isnan(merged[idx])) << "idx=" << idx;
              continue;
            }
            const double tol = 4e-6 * ref.abs_scale[idx] + 1e-30;
            const double err = std::fabs(static_cast<double>(merged[idx]) - whole[idx]);
            worst = std::max(worst, err / tol);
            EXPECT_LE(err, tol) << "idx=" << idx << " merged " << merged[idx] << " whole "
                                << whole[idx];
          }
          worst_ref = std::max(worst_ref, attnpool::test::expect_matches_reference(
                                              p, params, merged.data(), dv, ref));
        }
      }
    }
  }
  std::printf(
      "worst masked sharded error: %.3g of 4e-6 relative (vs pool), %.3g of the "
      "oracle's tolerance\n",
      worst, worst_ref);
}

// A row that sees none of a shard's keys gets exactly the empty state.
TEST(ShardedMasks, RowsThatSeeNoKeyOfTheShardGetTheEmptyState) {
  const problem p = make_problem(3, 2, 1, 2, attnpool::test::fresh_seed());
  const float inf = std::numeric_limits<float>::infinity();
  attnpool::pool_params params;
  params.mask = attnpool::mask::valid_length;
  const std::vector<std::size_t> lens{0, 2, 1};
  params.valid_lens = lens;
  const attnpool::partial_states st =
      attnpool::pool_partial(p.queries(), p.keys(), p.values(), params, opts_for(backend::cpu));
  EXPECT_EQ(st.max[0], -inf);
  EXPECT_EQ(st.sum[0], 0.0f);
  EXPECT_EQ(st.acc[0], 0.0f);
  EXPECT_EQ(st.acc[1], 0.0f);
  EXPECT_GT(st.sum[1], 0.0f);
  EXPECT_GT(st.sum[2], 0.0f);
  // leave_one_out on a one-key shard that is global key 1: query 1 skips it, 0 and 2 see it
  // (d = dv = 1 too: the single-pass loops would leave a finite reference for query 1).
  params.mask = attnpool::mask::leave_one_out;
  for (std::size_t dv : {1, 2}) {
    const problem pl = make_problem(3, 2, 1, dv, attnpool::test::fresh_seed());
    const const_view k1{pl.keys().row(1), 1, 1, pl.keys().ld};
    const const_view v1{pl.values().row(1), 1, dv, pl.values().ld};
    const attnpool::partial_states lo =
        attnpool::pool_partial(pl.queries(), k1, v1, params, opts_for(backend::cpu), 1);
    EXPECT_EQ(lo.max[1], -inf) << "dv=" << dv;
    EXPECT_EQ(lo.sum[1], 0.0f) << "dv=" << dv;
    for (std::size_t c = 0; c < dv; ++c) EXPECT_EQ(lo.acc[dv + c], 0.0f) << "dv=" << dv;
    EXPECT_GT(lo.sum[0], 0.0f);
    EXPECT_GT(lo.sum[2], 0.0f);
  }
}

TEST(ShardedMasks, Errors) {
  const problem p = make_problem(3, 4, 1, 1, 1);
  auto expect_error = [&](const attnpool::pool_params& params, backend be,
                          const std::string& words) {
    try {
      attnpool::pool_partial(p.queries(), p.keys(), p.values(), params, opts_for(be));
      ADD_FAILURE() << "expected invalid_argument mentioning '" << words << "'";
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  attnpool::pool_params params;
  params.mask = attnpool::mask::valid_length;
  const std::vector<std::size_t> two{1, 2}, beyond{0, 4, 5};
  params.valid_lens = two;
  expect_error(params, backend::cpu,
               "pool_partial: params.valid_lens must hold one count per query (n = 3), got 2");
  params.valid_lens = beyond;
  expect_error(params, backend::cpu,
               "pool_partial: valid_lens[2] = 5 exceeds this shard's key "
               "count m = 4");
  expect_error(params, backend::cuda_fused,
               "pool_partial: params.mask = valid_length is not supported in batches or shards on "
               "the GPU yet");
  params.mask = attnpool::mask::leave_one_out;
  expect_error(params, backend::cuda_fused, "params.mask = leave_one_out is not supported");
  expect_error(params, backend::reference, "reference");
}

TEST(Sharded, Errors) {
  const problem p = make_problem(3, 4, 1, 1, 1);
  attnpool::pool_params params{1e-4};
  params.kernel = attnpool::kernel::boxcar;
  const auto parts = shard(p, 2, params);
  std::vector<float> out(3);
  EXPECT_THROW(attnpool::merge_partials(parts, {out.data(), 3, 1}, params),
               attnpool::invalid_argument);
  EXPECT_THROW(attnpool::merge_partials({}, {out.data(), 3, 1}), attnpool::invalid_argument);
  EXPECT_THROW(attnpool::merge_partials(parts, {out.data(), 2, 1}), attnpool::invalid_argument);
  params.empty = attnpool::empty_support::nearest;
  EXPECT_THROW(attnpool::pool_partial(p.queries(), p.keys(), p.values(), params),
               attnpool::invalid_argument);
  EXPECT_THROW(attnpool::pool_partial(p.queries(), p.keys(), p.values(), {},
                                      opts_for(backend::cuda_unfused)),
               attnpool::invalid_argument);
  EXPECT_THROW(attnpool::pool_partial(p.queries(), p.keys(), p.values(), {},
                                      opts_for(backend::reference)),
               attnpool::invalid_argument);
}

// Without a usable GPU (no device, or a build without CUDA, where src/cuda/stub.cpp answers)
// every batched and sharded CUDA entry point fails loudly with cuda_error, never silently.
TEST(BatchedCuda, WithoutADeviceEveryEntryPointThrowsCudaError) {
  if (attnpool::cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  const problem p = make_problem(3, 4, 1, 1, 1);
  std::vector<float> out(3);
  const std::vector<std::size_t> qo{0, 3}, ko{0, 4};
  EXPECT_THROW(attnpool::pool_batched(p.queries(), p.keys(), p.values(), {out.data(), 3, 1}, qo,
                                      ko, {}, opts_for(backend::cuda_fused)),
               attnpool::cuda_error);
  EXPECT_THROW(attnpool::pool_partial(p.queries(), p.keys(), p.values(), {},
                                      opts_for(backend::cuda_fused)),
               attnpool::cuda_error);
  EXPECT_THROW(attnpool::pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 3, 1}),
               attnpool::cuda_error);
#ifndef ATTNPOOL_HAS_CUDA
  // The device-pointer API exists in a CPU-only build and says why it cannot run.
  try {
    attnpool::cuda::merge_partials({}, {}, {}, {});
    ADD_FAILURE() << "expected cuda_error";
  } catch (const attnpool::cuda_error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  EXPECT_THROW(attnpool::cuda::pool_batched_workspace_size(1, 1, 1, 1), attnpool::cuda_error);
#endif
}

}  // namespace
