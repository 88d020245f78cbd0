// The key-parallel decode forward (ATTNPOOL_CUDA_DECODE=1, kernels/fused/decode_agent.cuh) against
// the fp64 reference: n in {1, 7, 64}, m in {1, 129, 4097, 2^20}, d = dv = 1, then d in {2, 3, 8}
// with one and two value windows, bandwidths 1e-3 and 1e3, keys 1e4 away, split-K by the plan,
// forced off and forced on; each case also checks that the decode plan is the one that ran, and
// the result is bitwise the same across runs. The binary sets the switch itself before the
// first call, so it tests the path whichever way it is started. tests/core/test_decode.cpp runs
// the same per-thread arithmetic on the CPU. Without a GPU every case skips with "no CUDA device".
#include <attnpool/cuda.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"
#include "fused_vs_reference.hpp"
#include "kernels/fused/decode.hpp"
#include "kernels/fused/decode_plan.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace attnpool::test {
namespace {

// Before main, so before kernels::fused_decode() reads it once.
const bool kSwitchSet = setenv("ATTNPOOL_CUDA_DECODE", "1", 1) == 0;

TEST(decode_switch, is_set_before_the_first_call) {
  EXPECT_TRUE(kSwitchSet);
  EXPECT_TRUE(kernels::fused_decode());
}

std::vector<fused_case> size_cases() {
  std::vector<fused_case> cases;
  for (std::size_t n : {1, 7, 64})
    for (std::size_t m :
         {std::size_t{1}, std::size_t{129}, std::size_t{4097}, std::size_t{1} << 20})
      cases.push_back({n, m, 1, 1, 0.3, 0, 0.0f});
  return cases;
}

std::vector<fused_case> shape_cases() {
  std::vector<fused_case> cases;
  for (std::size_t d : {2, 3, 8})
    for (std::size_t dv : {1, 3, 8, 9, 20})
      for (std::size_t n : {1, 7, 64}) cases.push_back({n, 4097, d, dv, 0.5, 0, 0.0f});
  return cases;
}

std::vector<fused_case> extreme_cases() {
  std::vector<fused_case> cases;
  for (double h : {1e-3, 1e3})
    for (float off : {0.0f, 1e4f})
      for (std::size_t n : {1, 7, 64}) cases.push_back({n, 4097, 1, 1, h, 0, off});
  return cases;
}

std::vector<fused_case> split_cases() {
  std::vector<fused_case> cases;
  for (int s : {1, 3, 33})
    for (std::size_t n : {1, 7, 64}) cases.push_back({n, 4097, 3, 3, 0.5, s, 0.0f});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(sizes, fused_vs_reference, testing::ValuesIn(size_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(shapes, fused_vs_reference, testing::ValuesIn(shape_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(extremes, fused_vs_reference, testing::ValuesIn(extreme_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(split_k, fused_vs_reference, testing::ValuesIn(split_cases()), case_name);

// The call takes plan_decode's split count, not plan_fused's: the decode kernel is what ran.
TEST(decode_plan_on_device, the_decode_plan_is_taken) {
  ATTNPOOL_REQUIRE_DEVICE();
  const std::size_t m = std::size_t{1} << 20;
  const int sms = cuda::detail::current_sm_count();
  for (std::size_t n : {1, 7, 64}) {
    EXPECT_EQ(cuda::detail::fused_splits(n, m, 1, 1, {}, pool_params{0.3}),
              kernels::plan_decode(n, m, 1, 1, sms).splits);
  }
  // Outside its shapes the default plan stays.
  EXPECT_EQ(cuda::detail::fused_splits(65, m, 1, 1, {}, pool_params{0.3}),
            kernels::plan_fused(65, m, 1, 1, sms).splits);
}

TEST(decode_determinism, bitwise_identical_across_runs) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(7, std::size_t{1} << 20, 1, 1, fresh_seed());
  const pool_params params{0.3};
  const std::vector<float> a = run_fused(p, params, 0);
  const std::vector<float> b = run_fused(p, params, 0);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace attnpool::test
