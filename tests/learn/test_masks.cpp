// Masks: leave-one-out and per-query valid key counts, on the host backends against
// the fp64 oracle (which applies the mask by its own, independent rule), with fresh seeds.
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>

#include "learn_support.hpp"
#include "test_support.hpp"

namespace {

using attnpool::backend;
using attnpool::mask;
using attnpool::test::fresh_seed;
using attnpool::test::expect_invalid;
using attnpool::test::make_problem;
using attnpool::test::problem;
using attnpool::test::random_lens;

using attnpool::test::opts_for;

void check_masked_pool(const problem& p, const attnpool::pool_params& params, backend b,
                       unsigned threads = 0) {
  attnpool::test::check_pool_against_reference(p, params, b, threads);
}

class MaskedHostBackend : public ::testing::TestWithParam<backend> {};

TEST_P(MaskedHostBackend, LeaveOneOutMatchesTheOracle) {
  // Sizes around the CPU engine's 1024-key tiles: 1025 leaves a one-key last tile whose only key
  // is masked for the last row.
  for (std::size_t n : {2, 7, 129, 1025, 2500}) {
    for (std::size_t d : {1, 3, 16}) {
      for (std::size_t dv : {1, 4}) {
        if (n > 1025 && d == 16) continue;  // the fp64 oracle's time, not the engine's
        const problem p = make_problem(n, n, d, dv, fresh_seed());
        attnpool::pool_params params{0.3};
        params.mask = mask::leave_one_out;
        check_masked_pool(p, params, GetParam());
      }
    }
  }
}

TEST_P(MaskedHostBackend, LeaveOneOutWithDuplicatesIgnoresOnlyTheRowItself) {
  // Keys equal to their query: unmasked, every row would return mostly its own value at a small
  // bandwidth; masked, the nearest *other* key wins.
  const std::vector<float> x = {0.0f, 1.0f, 1.0f, 3.0f};
  const std::vector<float> y = {10.0f, 20.0f, 30.0f, 40.0f};
  attnpool::pool_params params{1e-3};
  params.mask = mask::leave_one_out;
  const auto out = attnpool::pool(x, x, y, params, opts_for(GetParam()));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0], 20.0f * 0.5f + 30.0f * 0.5f);  // keys 1 and 2 tie at distance 1
  EXPECT_EQ(out[1], 30.0f);                        // its duplicate, key 2
  EXPECT_EQ(out[2], 20.0f);
  EXPECT_EQ(out[3], 25.0f);  // keys 1 and 2 again tie
}

TEST_P(MaskedHostBackend, ValidLengthsMatchTheOracle) {
  for (std::size_t n : {1, 7, 129}) {
    for (std::size_t m : {1, 7, 1025, 4097}) {
      for (std::size_t d : {1, 3, 16}) {
        for (std::size_t dv : {1, 4}) {
          const problem p = make_problem(n, m, d, dv, fresh_seed());
          const auto lens = random_lens(n, m, p.seed);
          attnpool::pool_params params{0.5};
          params.mask = mask::valid_length;
          params.valid_lens = lens;
          check_masked_pool(p, params, GetParam());
        }
      }
    }
  }
}

TEST_P(MaskedHostBackend, ValidLengthMIsTheUnmaskedResult) {
  const problem p = make_problem(65, 3000, 2, 3, fresh_seed());
  SCOPED_TRACE(attnpool::test::describe(p, 0.2));
  const std::vector<std::size_t> lens(p.n, p.m);
  attnpool::pool_params masked{0.2};
  masked.mask = mask::valid_length;
  masked.valid_lens = lens;
  std::vector<float> a(p.n * p.dv), b(p.n * p.dv);
  attnpool::pool(p.queries(), p.keys(), p.values(), {a.data(), p.n, p.dv}, masked,
                 opts_for(GetParam()));
  attnpool::pool(p.queries(), p.keys(), p.values(), {b.data(), p.n, p.dv}, {0.2},
                 opts_for(GetParam()));
  EXPECT_EQ(a, b);
}

TEST_P(MaskedHostBackend, MaskedWeightsAreZeroAndRowsSumToOne) {
  const problem p = make_problem(40, 40, 2, 1, fresh_seed());
  SCOPED_TRACE(attnpool::test::describe(p, 0.4));
  const auto lens = random_lens(p.n, p.m, p.seed);
  for (mask mk : {mask::leave_one_out, mask::valid_length}) {
    attnpool::pool_params params{0.4};
    params.mask = mk;
    params.valid_lens = lens;
    std::vector<float> w(p.n * p.m);
    attnpool::attention_weights(p.queries(), p.keys(), {w.data(), p.n, p.m}, params,
                                opts_for(GetParam()));
    const auto ref = attnpool::reference::weights(p.queries(), p.keys(), params);
    for (std::size_t i = 0; i < p.n; ++i) {
      double sum = 0.0;
      for (std::size_t j = 0; j < p.m; ++j) {
        const float wij = w[i * p.m + j];
        sum += wij;
        if (!attnpool::reference::key_visible(params, i, j)) {
          EXPECT_EQ(wij, 0.0f) << "masked w(" << i << ", " << j << ")";
        } else {
          // Scores here are <= 2 / (2 * 0.16) ~ 6: the weights' float error is ~1e-6 relative.
          EXPECT_NEAR(wij, ref[i * p.m + j], 1e-5 * ref[i * p.m + j] + 1e-12);
        }
      }
      EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Host, MaskedHostBackend,
                         ::testing::Values(backend::reference, backend::cpu),
                         attnpool::test::backend_name);

TEST(MaskedCpuEngine, BitwiseIdenticalAcrossThreadCounts) {
  const problem p = make_problem(700, 700, 1, 1, fresh_seed());
  SCOPED_TRACE(attnpool::test::describe(p, 0.1));
  attnpool::pool_params params{0.1};
  params.mask = mask::leave_one_out;
  auto run = [&](unsigned t) {
    std::vector<float> out(p.n);
    attnpool::pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, 1}, params,
                   opts_for(backend::cpu, t));
    return out;
  };
  const auto one = run(1);
  for (unsigned t : {2u, 3u, 0u}) EXPECT_EQ(one, run(t)) << "threads=" << t;
}

// ---- validation -------------------------------------------------------------------------------

TEST(MaskErrors, LeaveOneOutNeedsTheSameSet) {
  const std::vector<float> q = {0, 1, 2}, k = {0, 1}, v = {1, 2};
  attnpool::pool_params params{1.0};
  params.mask = mask::leave_one_out;
  for (backend b : {backend::reference, backend::cpu}) {
    expect_invalid([&] { (void)attnpool::pool(q, k, v, params, opts_for(b)); },
                   {"leave_one_out", "n = 3", "m = 2"});
    const std::vector<float> one = {0.5f};
    expect_invalid([&] { (void)attnpool::pool(one, one, one, params, opts_for(b)); },
                   {"row 0", "no key"});
  }
}

TEST(MaskErrors, ValidLengthsAreCheckedUpFront) {
  const std::vector<float> q = {0, 1, 2}, k = {0, 1}, v = {1, 2};
  attnpool::pool_params params{1.0};
  params.mask = mask::valid_length;
  const std::vector<std::size_t> too_few = {1, 2}, zero = {1, 0, 2}, too_many = {1, 2, 3};
  for (backend b : {backend::reference, backend::cpu}) {
    params.valid_lens = too_few;
    expect_invalid([&] { (void)attnpool::pool(q, k, v, params, opts_for(b)); },
                   {"valid_lens", "n = 3", "got 2"});
    params.valid_lens = zero;
    expect_invalid([&] { (void)attnpool::pool(q, k, v, params, opts_for(b)); },
                   {"valid_lens[1] = 0", "row 1"});
    params.valid_lens = too_many;
    expect_invalid([&] { (void)attnpool::pool(q, k, v, params, opts_for(b)); },
                   {"valid_lens[2] = 3", "m = 2"});
  }
}

// pool() takes masks on cuda_fused (tests/cuda/test_cuda_learn.cpp checks the numbers); the
// unfused path and attention_weights on the GPU still refuse them, before any CUDA call.
TEST(MaskErrors, UnfusedAndGpuWeightsSayNotImplementedOnTheGpuYet) {
  const std::vector<float> x = {0, 1, 2}, y = {1, 2, 3};
  attnpool::pool_params params{1.0};
  params.mask = mask::leave_one_out;
  expect_invalid([&] { (void)attnpool::pool(x, x, y, params, opts_for(backend::cuda_unfused)); },
                 {"leave_one_out", "not implemented on the GPU yet", "cuda_fused"});
  for (backend b : {backend::cuda_fused, backend::cuda_unfused}) {
    expect_invalid([&] { (void)attnpool::attention_weights(x, x, 1, params, opts_for(b)); },
                   {"leave_one_out", "not implemented on the GPU yet"});
  }
}

TEST(MaskErrors, CudaFusedRunsMasksOnTheGpuOrSaysWhyNot) {
  const std::vector<float> x = {0, 1, 2}, y = {1, 2, 3};
  attnpool::pool_params params{1.0};
  params.mask = mask::leave_one_out;
  auto run = [&] { return attnpool::pool(x, x, y, params, opts_for(backend::cuda_fused)); };
  if (attnpool::cuda_available()) {
    const auto gpu = run();
    const auto ref = attnpool::pool(x, x, y, params, opts_for(backend::reference));
    for (std::size_t i = 0; i < 3; ++i) EXPECT_NEAR(gpu[i], ref[i], 1e-5) << i;
  } else {
    EXPECT_THROW(run(), attnpool::cuda_error);  // no device (or no CUDA): loud, no fallback
  }
  // The mask's own rules hold on the GPU path too, checked before any CUDA call.
  params.mask = mask::valid_length;
  const std::vector<std::size_t> zero = {1, 0, 2};
  params.valid_lens = zero;
  expect_invalid(run, {"valid_lens[1] = 0", "row 1"});
}

}  // namespace
