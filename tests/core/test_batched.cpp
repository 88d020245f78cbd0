// pool_batched against per-problem reference::pool and per-problem pool(); pool_partial +
// merge_partials against the unsharded engine.
#include <attnpool/batched.hpp>
#include <attnpool/cuda.hpp>
#include <attnpool/multi_gpu.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
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

batch make_batch(const std::vector<std::pair<std::size_t, std::size_t>>& sizes, std::size_t d,
                 std::size_t dv) {
  batch b;
  b.d = d;
  b.dv = dv;
  for (auto [n, m] : sizes) {
    b.parts.push_back(make_problem(n, m, d, dv, attnpool::test::fresh_seed()));
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
  expect_error([&] { call({0, 3, 5}, {0, 4, 9}, opts_for(backend::cpu), loo); },
               "params.mask = leave_one_out");
  expect_error([&] { call({0, 3, 5}, {0, 4, 9}, opts_for(backend::cpu), {-1.0}); }, "bandwidth");
  // Problems with no queries may have no keys; a batch of nothing is a no-op.
  EXPECT_NO_THROW(attnpool::pool_batched(const_view{}, const_view{}, const_view{}, mutable_view{},
                                         std::vector<std::size_t>{0, 0},
                                         std::vector<std::size_t>{0, 0}));
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
