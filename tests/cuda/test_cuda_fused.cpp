// The fused CUDA kernel against the fp64 reference: sizes 1, 7, 129, 4097 (partial tiles and
// rows), every compiled (D, DV) and the generic path, extreme bandwidths, far-away keys, split-K
// forced on and off, leading dimensions, NaN-poisoned outputs and pads, bitwise reproducibility.
// Without a GPU every case skips with "no CUDA device".
#include <attnpool/cuda.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"
#include "fused_vs_reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

std::vector<fused_case> size_cases() {
  std::vector<fused_case> cases;
  for (std::size_t n : {1, 7, 129, 4097})
    for (std::size_t m : {1, 7, 129, 4097})
      for (std::size_t d : {1, 3, 16}) cases.push_back({n, m, d, d == 3 ? 2u : 1u, 1.0, 0, 0.0f});
  return cases;
}

// Every compiled configuration (D, DV), plus shapes served by padding (d = 5, dv = 3), by
// several value windows (dv > 64) and by the generic path (d > 64). m = 300 ends on a partial
// tile and a partial chunk.
std::vector<fused_case> dim_cases() {
  std::vector<fused_case> cases;
  for (std::size_t d : {1, 2, 3, 4, 8, 16, 32, 64})
    for (std::size_t dv : {1, 2, 4, 8, 16, 32, 64})
      cases.push_back({129, 300, d, dv, 1.0, 0, 0.0f});
  for (auto [d, dv] : std::vector<std::pair<std::size_t, std::size_t>>{
           {5, 3}, {7, 33}, {12, 100}, {65, 1}, {100, 5}, {3, 129}, {130, 70}})
    cases.push_back({129, 300, d, dv, 1.0, 0, 0.0f});
  return cases;
}

std::vector<fused_case> bandwidth_cases() {
  std::vector<fused_case> cases;
  for (double h : {1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3})
    for (std::size_t d : {1, 3}) cases.push_back({129, 4097, d, 1, h, 0, 0.0f});
  return cases;
}

// Keys 1e4 away from every query. The float32 score error is ~(d + 4) eps |s| with |s| ~ 1e8 /
// (2 h^2); for the first-order tolerance of test_support.hpp to be meaningful that must be
// << 1, i.e. h >~ 30: then neighbouring keys' weights differ smoothly and rounding cannot
// reorder them. (Smaller h with far keys is tested on a spaced grid below.)
std::vector<fused_case> far_cases() {
  std::vector<fused_case> cases;
  for (double h : {30.0, 100.0, 1e3})
    for (std::size_t d : {1, 3}) cases.push_back({129, 4097, d, 2, h, 0, 1e4f});
  return cases;
}

std::vector<fused_case> split_cases() {
  std::vector<fused_case> cases;
  for (std::size_t n : {1, 7, 129})
    for (std::size_t m : {4097, 20000})
      for (int s : {1, 3, 16, 33, 1000}) {
        cases.push_back({n, m, 3, 2, 1.0, s, 0.0f});
        cases.push_back({n, m, 1, 1, 1.0, s, 0.0f});  // the lazy-rescale path (d = dv = 1)
      }
  return cases;
}

// The d = dv = 1 shapes that matter to the expanded score (ATTNPOOL_CUDA_D1_EXPANDED=1; with
// it off they test the default kernel): the benchmark's data at h = 0.5 (every row expanded),
// h = 0.35 (warps mixing both forms' tiles), keys 1e4 away at a bandwidth that expands them
// and at one that does not, split-K, and a partial last tile.
std::vector<fused_case> expanded_cases() {
  return {{4097, 4097, 1, 1, 0.5, 0, 0.0f}, {4097, 4097, 1, 1, 0.35, 0, 0.0f},
          {129, 4097, 1, 1, 1e6, 0, 1e4f},  {129, 4097, 1, 1, 100.0, 0, 1e4f},
          {7, 20000, 1, 1, 0.5, 16, 0.0f},  {129, 300, 1, 1, 2.0, 1, 0.0f}};
}

INSTANTIATE_TEST_SUITE_P(sizes, fused_vs_reference, testing::ValuesIn(size_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(expanded, fused_vs_reference, testing::ValuesIn(expanded_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(dims, fused_vs_reference, testing::ValuesIn(dim_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(bandwidths, fused_vs_reference, testing::ValuesIn(bandwidth_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(far_keys, fused_vs_reference, testing::ValuesIn(far_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(split_k, fused_vs_reference, testing::ValuesIn(split_cases()), case_name);

// Sorted keys: every tile has its own centre and radius, so the expanded score's per-tile
// constants (ATTNPOOL_CUDA_D1_EXPANDED=1) change from tile to tile and with the row's reference.
TEST(fused_sorted_keys, per_tile_centres) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (double h : {0.1, 0.5, 2.0}) {
    for (int splits : {1, 8}) {
      problem p = make_problem(129, 4097, 1, 1, fresh_seed());
      for (std::size_t j = 0; j < p.m; ++j)
        p.k[j * (p.d + p.pad)] = static_cast<float>(j) / static_cast<float>(p.m);
      SCOPED_TRACE(describe(p, h) + " splits=" + std::to_string(splits));
      const pool_params params{h};
      const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
      const std::vector<float> out = run_fused(p, params, splits, 1);
      expect_matches_reference(p, params, out.data(), p.dv + 1, ref);
    }
  }
}

// Far keys at small bandwidths, made well conditioned by construction: keys on a grid 0.5
// apart starting 1e4 away, so the nearest key's score beats the next by ~1e4 / h^2 natural
// units and its weight is 1 to float precision; every output must be that key's value. At
// h = 1e-3 the scores are ~1e14 with an ulp of ~1e7: this is the case that breaks a kernel
// which contracts score - max into an FMA (the best key would get 2^(+-1e7)).
TEST(fused_far_keys, spaced_grid_small_bandwidths) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (double h : {1e-3, 1e-1, 1.0}) {
    for (int splits : {1, 8}) {
      problem p = make_problem(129, 1000, 1, 1, fresh_seed());
      for (std::size_t j = 0; j < p.m; ++j)
        p.k[j * (p.d + p.pad)] = 1e4f + 0.5f * static_cast<float>(j);
      SCOPED_TRACE(describe(p, h) + " splits=" + std::to_string(splits));
      const pool_params params{h};
      const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
      const std::vector<float> out = run_fused(p, params, splits, 1);
      expect_matches_reference(p, params, out.data(), p.dv + 1, ref);
      for (std::size_t i = 0; i < p.n; ++i)
        EXPECT_NEAR(out[i * (p.dv + 1)], p.v[0], 1e-6 * std::fabs(p.v[0])) << "row " << i;
    }
  }
}

// Keys that come nearer with every chunk (1e3 down to 0 in steps of 0.25, queries in [0, 1)):
// at small h every 16-key chunk beats the running reference by far more than the lazy path's
// limit, so d = dv = 1 (fused_traits::kLazyRescale) rebases on every chunk; at h = 10 it never
// needs to. Both must match the reference, with split-K on and off.
TEST(fused_lazy_rescale, keys_approaching_the_queries) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (double h : {0.05, 1.0, 10.0}) {
    for (int splits : {1, 8}) {
      problem p = make_problem(129, 4001, 1, 1, fresh_seed());
      for (std::size_t j = 0; j < p.m; ++j)
        p.k[j * (p.d + p.pad)] = 1e3f - 0.25f * static_cast<float>(j);
      SCOPED_TRACE(describe(p, h) + " splits=" + std::to_string(splits));
      const pool_params params{h};
      const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
      const std::vector<float> out = run_fused(p, params, splits, 1);
      expect_matches_reference(p, params, out.data(), p.dv + 1, ref);
    }
  }
}

TEST(fused_split_k, heuristic_engages_for_few_queries_and_obeys_overrides) {
  ATTNPOOL_REQUIRE_DEVICE();
  EXPECT_GT(cuda::detail::fused_splits(1, 1 << 20, 1, 1, {}), 1);
  EXPECT_EQ(cuda::detail::fused_splits(1 << 20, 1 << 20, 1, 1, {}), 1);
  EXPECT_EQ(cuda::detail::fused_splits(7, 4097, 3, 2, {1}), 1);
  EXPECT_EQ(cuda::detail::fused_splits(7, 4097, 3, 2, {16}), 16);
  // Never more ranges than keys, and never an empty range.
  EXPECT_EQ(cuda::detail::fused_splits(7, 5, 3, 2, {1000}), 5);
  EXPECT_EQ(cuda::detail::fused_splits(1, 10, 1, 1, {4}), 4);  // ranges of 3, 3, 3, 1
}

TEST(fused_leading_dimensions, wide_pads_are_never_read_or_written) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (int splits : {1, 5}) {
    const problem p = make_problem(129, 1000, 3, 5, fresh_seed(), 0.0f, /*pad=*/7);
    SCOPED_TRACE(describe(p, 0.5) + " splits=" + std::to_string(splits));
    const pool_params params{0.5};
    const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
    const std::vector<float> out = run_fused(p, params, splits, /*out_pad=*/9);
    expect_matches_reference(p, params, out.data(), p.dv + 9, ref);
  }
}

TEST(fused_determinism, bitwise_identical_across_runs) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (int splits : {0, 1, 7}) {
    const problem p = make_problem(300, 5000, 3, 4, fresh_seed());
    SCOPED_TRACE(describe(p, 0.3) + " splits=" + std::to_string(splits));
    const pool_params params{0.3};
    const std::vector<float> a = run_fused(p, params, splits);
    const std::vector<float> b = run_fused(p, params, splits);
    ASSERT_EQ(a.size(), b.size());
    // memcmp, not ==: NaN pads compare unequal to themselves but have identical bits.
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
}

TEST(fused_host_api, pool_with_cuda_fused_backend_matches_reference) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(4097, 129, 3, 2, fresh_seed());
  SCOPED_TRACE(describe(p, 1.0));
  const pool_params params{1.0};
  const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
  std::vector<float> out(p.n * (p.dv + 3));
  poison(out);
  options opts;
  opts.backend = backend::cuda_fused;
  pool(p.queries(), p.keys(), p.values(), mutable_view{out.data(), p.n, p.dv, p.dv + 3}, params,
       opts);
  expect_matches_reference(p, params, out.data(), p.dv + 3, ref);
  EXPECT_EQ(resolve_backend(backend::automatic), backend::cuda_fused);
}

}  // namespace
}  // namespace attnpool::test
