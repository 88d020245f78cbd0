// Masked forwards (mask::leave_one_out, mask::valid_length) on cuda_fused against the fp64
// reference: every compiled (D, DV) and the generic D, sizes 1, 7, 129, 4097, partial tiles and
// chunks, extreme bandwidths, split-K forced on and off (a split that holds none of a row's keys),
// and valid_lens that end on chunk and tile edges. ctest runs the binary twice: with
// ATTNPOOL_CUDA_FUSED_MASKS unset (the generic-score path) and with it = 1 (the Gaussian fast
// path, kernels/fused/agent.cuh, ctest prefix "fused_masks_on."); scripts/device-check.sh does
// the same. Every data set is checked to tell the masked answer from the unmasked one, so a
// kernel that ignored the mask would fail. Without a GPU every case skips with "no CUDA device".
#include <attnpool/cuda.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"
#include "kernels/fused/dispatch.hpp"
#include "learn_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

// How valid_lens are drawn: random in [1, m] (row 0 sees m keys, the last row 1); every row 1;
// every row m (the mask cuts nothing); rows cycling through chunk and tile edges (15, 16, 17,
// 127, 128, 129, 256 keys, capped at m); non-decreasing (the block's rows share their bound).
enum class lens_kind { random, one, all, edges, sorted };

struct masked_case {
  std::size_t n, m, d, dv;
  double h;
  int splits;  // 0 = heuristic, 1 = off, k = forced
  mask kind;
  lens_kind lens = lens_kind::random;
};

// gtest prints a parameter with this (ctest's test names carry it), and names cases after it.
void PrintTo(const masked_case& c, std::ostream* os) {
  *os << (c.kind == mask::leave_one_out ? "loo" : "vl") << static_cast<int>(c.lens) << "_n" << c.n
      << "_m" << c.m << "_d" << c.d << "_dv" << c.dv << "_s" << c.splits;
}

std::string case_name(const testing::TestParamInfo<masked_case>& info) {
  std::ostringstream os;
  PrintTo(info.param, &os);
  os << "_" << info.index;
  return os.str();
}

std::vector<std::size_t> lens_for(const masked_case& c, std::uint64_t seed) {
  std::vector<std::size_t> lens = random_lens(c.n, c.m, seed);
  constexpr std::size_t kEdges[] = {15, 16, 17, 127, 128, 129, 256};
  for (std::size_t i = 0; i < c.n; ++i) {
    switch (c.lens) {
      case lens_kind::random:
        break;
      case lens_kind::one:
        lens[i] = 1;
        break;
      case lens_kind::all:
        lens[i] = c.m;
        break;
      case lens_kind::edges:
        lens[i] = std::min(c.m, kEdges[i % std::size(kEdges)]);
        break;
      case lens_kind::sorted:
        lens[i] = 1 + i * (c.m - 1) / std::max<std::size_t>(c.n - 1, 1);
        break;
    }
  }
  return lens;
}

// Whether the masked oracle differs from the unmasked one by more than the tolerance somewhere:
// then an output that ignored the mask cannot pass expect_matches_reference.
bool mask_is_visible(const problem& p, const pool_params& masked, const reference::pooled& ref) {
  pool_params plain = masked;
  plain.mask = mask::none;
  plain.valid_lens = {};
  const reference::pooled unmasked = reference::pool(p.queries(), p.keys(), p.values(), plain);
  for (std::size_t idx = 0; idx < ref.out.size(); ++idx)
    if (std::fabs(ref.out[idx] - unmasked.out[idx]) > 10.0 * tolerance_for(ref, idx, p.d))
      return true;
  return false;
}

class fused_masked_vs_reference : public testing::TestWithParam<masked_case> {};

TEST_P(fused_masked_vs_reference, matches_reference) {
  ATTNPOOL_REQUIRE_DEVICE();
  const masked_case& c = GetParam();
  const problem p = make_problem(c.n, c.m, c.d, c.dv, fresh_seed());
  const std::vector<std::size_t> lens = lens_for(c, p.seed);
  pool_params params{c.h};
  params.mask = c.kind;
  if (c.kind == mask::valid_length) params.valid_lens = lens;
  SCOPED_TRACE(describe(p, c.h) + " mask=" + to_string(c.kind) +
               " fast path=" + (kernels::fused_masks() ? "on" : "off"));
  const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
  constexpr std::size_t kOutPad = 2;
  const std::vector<float> out = run_fused(p, params, c.splits, kOutPad);
  const double worst = expect_matches_reference(p, params, out.data(), p.dv + kOutPad, ref);
  RecordProperty("worst_error_over_tolerance", std::to_string(worst));
  // Where every valid_len is m the mask cuts nothing (lens_kind::all, m = 1, n = 1).
  const bool cuts = c.kind == mask::leave_one_out ||
                    std::any_of(lens.begin(), lens.end(), [&](std::size_t l) { return l < c.m; });
  if (cuts) {
    EXPECT_TRUE(mask_is_visible(p, params, ref)) << "this data cannot tell the mask apart";
  }
}

// Both masks on one shape.
void add_both(std::vector<masked_case>& cases, std::size_t n, std::size_t m, std::size_t d,
              std::size_t dv, double h, int splits) {
  if (n == m && n >= 2) cases.push_back({n, m, d, dv, h, splits, mask::leave_one_out});
  cases.push_back({n, m, d, dv, h, splits, mask::valid_length});
}

std::vector<masked_case> size_cases() {
  std::vector<masked_case> cases;
  for (std::size_t n : {1, 7, 129, 4097})
    for (std::size_t m : {1, 7, 129, 4097})
      for (std::size_t d : {1, 3})
        if (n * m <= 129 * 4097) add_both(cases, n, m, d, d == 3 ? 2 : 1, 0.3, 0);
  add_both(cases, 4097, 4097, 1, 1, 0.3, 0);
  return cases;
}

// Every compiled configuration, padded shapes, several value windows and the generic D = 0;
// m = 300 ends on a partial tile and a partial chunk.
std::vector<masked_case> dim_cases() {
  std::vector<masked_case> cases;
  for (std::size_t d : {1, 2, 3, 4, 8, 16, 32, 64})
    for (std::size_t dv : {1, 2, 4, 8, 16, 32, 64}) add_both(cases, 300, 300, d, dv, 0.5, 0);
  for (auto [d, dv] : std::vector<std::pair<std::size_t, std::size_t>>{
           {5, 3}, {12, 100}, {65, 1}, {100, 5}, {3, 129}})
    add_both(cases, 300, 300, d, dv, 0.5, 0);
  return cases;
}

std::vector<masked_case> bandwidth_cases() {
  std::vector<masked_case> cases;
  for (double h : {1e-3, 1e-2, 1e-1, 1.0, 1e3})
    for (std::size_t d : {1, 3}) add_both(cases, 1000, 1000, d, 1, h, 0);
  return cases;
}

// Split-K: key ranges that hold none of a row's keys (valid_length) or its skipped key at a
// range's first or last index (leave_one_out, 33 splits of 4097 keys).
std::vector<masked_case> split_cases() {
  std::vector<masked_case> cases;
  for (int s : {1, 3, 16, 33}) {
    for (std::size_t d : {1, 3}) {
      cases.push_back({7, 20000, d, d == 3 ? 2u : 1u, 0.5, s, mask::valid_length});
      add_both(cases, 129, 129, d, d == 3 ? 2 : 1, 0.5, s);
      add_both(cases, 4097, 4097, d, d == 3 ? 2 : 1, 0.5, s);
    }
  }
  return cases;
}

std::vector<masked_case> lens_cases() {
  std::vector<masked_case> cases;
  for (lens_kind k : {lens_kind::one, lens_kind::all, lens_kind::edges, lens_kind::sorted})
    for (std::size_t d : {1, 3})
      for (int s : {1, 0}) {
        cases.push_back({129, 300, d, 1, 0.3, s, mask::valid_length, k});
        cases.push_back({4097, 4097, d, 1, 0.3, s, mask::valid_length, k});
      }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(sizes, fused_masked_vs_reference, testing::ValuesIn(size_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(dims, fused_masked_vs_reference, testing::ValuesIn(dim_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(bandwidths, fused_masked_vs_reference,
                         testing::ValuesIn(bandwidth_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(split_k, fused_masked_vs_reference, testing::ValuesIn(split_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(lens, fused_masked_vs_reference, testing::ValuesIn(lens_cases()),
                         case_name);

// The public entry points, host and device-pointer API (valid_lens copied into the caller's
// workspace), and bitwise repeatability.
TEST(fused_masks_api, host_and_device_api_match_reference_and_repeat_bitwise) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(2000, 2000, 1, 1, fresh_seed());
  const std::vector<std::size_t> lens = random_lens(p.n, p.m, p.seed);
  pool_params vl{0.2};
  vl.mask = mask::valid_length;
  vl.valid_lens = lens;
  pool_params loo{0.2};
  loo.mask = mask::leave_one_out;
  for (const pool_params* params : {&vl, &loo}) {
    SCOPED_TRACE(describe(p, 0.2) + " mask=" + to_string(params->mask));
    check_pool_against_reference(p, *params, backend::cuda_fused);
    const auto a = run_pool(p, *params, backend::cuda_fused);
    const auto b = run_pool(p, *params, backend::cuda_fused);
    expect_matches_reference(p, *params, a.data(), p.dv + 2,
                             reference::pool(p.queries(), p.keys(), p.values(), *params));
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
}

// Host only (runs without a GPU): the switch decides which instantiations a masked Gaussian call
// runs, and so the plan that sizes its workspace; non-Gaussian kernels keep the generic path.
TEST(fused_masks_switch, masked_gaussian_calls_take_the_path_the_switch_names) {
  std::printf("ATTNPOOL_CUDA_FUSED_MASKS: fast path %s\n", kernels::fused_masks() ? "on" : "off");
  pool_params loo{0.5};
  loo.mask = mask::leave_one_out;
  EXPECT_EQ(cuda::detail::uses_generic_score(loo), !kernels::fused_masks());
  pool_params vl{0.5};
  vl.mask = mask::valid_length;
  EXPECT_EQ(cuda::detail::uses_generic_score(vl), !kernels::fused_masks());
  loo.kernel = kernel::epanechnikov;
  EXPECT_TRUE(cuda::detail::uses_generic_score(loo));
  EXPECT_FALSE(cuda::detail::uses_generic_score(pool_params{0.5}));
}

}  // namespace
}  // namespace attnpool::test
