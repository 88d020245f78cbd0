// The fused forward's tensor-core path (ATTNPOOL_CUDA_TENSOR_CORES=1, kernels/fused/tc_agent.cuh)
// against the fp64 reference: d = 16, 32, 64 (and 9 and 40, zero-padded to 16 and 64), dv = 1, 3,
// 8, n and m in {1, 7, 129, 4097}, split-K by the heuristic, forced off and forced on. Wide
// bandwidths (h = 1.5 sqrt(d) on [0, 1)^d data: a R^2 <= 0.32, every block on the tensor cores),
// narrow ones and far-away keys (every block misses the bound and runs the FFMA agent), and dv =
// 16 (no tensor-core instantiation: the FFMA kernel). The binary sets the switch itself before
// the first call, so it tests the path whichever way it is started.
// Without a GPU every case skips with "no CUDA device".
#include <attnpool/cuda.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"
#include "fused_vs_reference.hpp"
#include "kernels/fused/dispatch.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

// Before main, so before kernels::fused_tensor_cores() reads it once.
const bool kSwitchSet = setenv("ATTNPOOL_CUDA_TENSOR_CORES", "1", 1) == 0;

double wide_h(std::size_t d) {
  return 1.5 * std::sqrt(static_cast<double>(d));
}

// The fused_vs_reference cases below run with the switch set; this binary's own check that it is.
TEST(tc_switch, is_set_before_the_first_call) {
  EXPECT_TRUE(kSwitchSet);
  EXPECT_TRUE(kernels::fused_tensor_cores());
}

std::vector<fused_case> size_cases() {
  std::vector<fused_case> cases;
  constexpr std::size_t kSizes[] = {1, 7, 129, 4097};
  for (std::size_t d : {16, 32, 64})
    for (std::size_t n : kSizes)
      for (std::size_t m : kSizes) {
        if (n * m * d > 4097u * 4097u * 16u) continue;  // the fp64 oracle's time
        cases.push_back({n, m, d, 1, wide_h(d), 0, 0.0f});
      }
  return cases;
}

std::vector<fused_case> shape_cases() {
  std::vector<fused_case> cases;
  for (std::size_t d : {9, 16, 32, 40, 64})
    for (std::size_t dv : {1, 3, 8, 16}) cases.push_back({129, 1000, d, dv, wide_h(d), 0, 0.0f});
  return cases;
}

std::vector<fused_case> fallback_cases() {
  std::vector<fused_case> cases;
  for (std::size_t d : {16, 64}) {
    // Narrow bandwidths: the bound fails, every block runs the FFMA agent.
    cases.push_back({129, 4097, d, 1, 0.25 * std::sqrt(static_cast<double>(d)), 0, 0.0f});
    // Keys 1e3 away: the block's centre (its queries' midrange) is far from every key.
    cases.push_back({129, 4097, d, 1, wide_h(d), 0, 1000.0f});
    // Near the limit: some blocks on either side (a R^2 reaches about 0.7 to 1.2 here).
    cases.push_back({4097, 1000, d, 2, 0.9 * std::sqrt(static_cast<double>(d)), 0, 0.0f});
  }
  return cases;
}

std::vector<fused_case> split_cases() {
  std::vector<fused_case> cases;
  for (std::size_t d : {16, 64})
    for (int s : {1, 3, 33}) cases.push_back({7, 4097, d, 3, wide_h(d), s, 0.0f});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(sizes, fused_vs_reference, testing::ValuesIn(size_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(shapes, fused_vs_reference, testing::ValuesIn(shape_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(fallback, fused_vs_reference, testing::ValuesIn(fallback_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(split_k, fused_vs_reference, testing::ValuesIn(split_cases()), case_name);

TEST(tc_determinism, bitwise_identical_across_runs) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(4097, 4097, 16, 1, fresh_seed());
  const pool_params params{wide_h(16)};
  const std::vector<float> a = run_fused(p, params, 0);
  const std::vector<float> b = run_fused(p, params, 0);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace attnpool::test
