// The fused path's parameterised test against the fp64 reference, shared by the binaries that
// instantiate it with their own cases (test_cuda_fused: the default kernels;
// test_cuda_tensor_cores: the tensor-core path): a case is {n, m, d, dv, h, splits, key offset}
// on make_problem's data, the output poisoned and every element held to the tolerance.
#pragma once

#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"

#include <gtest/gtest.h>

#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

namespace attnpool::test {

struct fused_case {
  std::size_t n, m, d, dv;
  double h;
  int splits;  // 0 = heuristic, 1 = off, k = forced
  float key_offset;
};

// Built with a stream: GCC 12 reports a false -Wrestrict on chains of std::string + (GCC bug
// 105329).
inline std::string case_name(const testing::TestParamInfo<fused_case>& info) {
  const fused_case& c = info.param;
  std::ostringstream os;
  os << "n" << c.n << "_m" << c.m << "_d" << c.d << "_dv" << c.dv << "_h" << std::fixed
     << std::setprecision(6) << c.h << "_s" << c.splits << "_off" << static_cast<int>(c.key_offset)
     << "_" << info.index;
  std::string name = os.str();
  for (char& ch : name)
    if (ch == '.' || ch == '-' || ch == '+') ch = '_';
  return name;
}

class fused_vs_reference : public testing::TestWithParam<fused_case> {};

TEST_P(fused_vs_reference, matches_reference) {
  ATTNPOOL_REQUIRE_DEVICE();
  const fused_case& c = GetParam();
  const problem p = make_problem(c.n, c.m, c.d, c.dv, fresh_seed(), c.key_offset);
  SCOPED_TRACE(describe(p, c.h));
  const pool_params params{c.h};
  const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
  constexpr std::size_t kOutPad = 2;
  const std::vector<float> out = run_fused(p, params, c.splits, kOutPad);
  const double worst = expect_matches_reference(p, params, out.data(), p.dv + kOutPad, ref);
  RecordProperty("worst_error_over_tolerance", std::to_string(worst));
}

}  // namespace attnpool::test
