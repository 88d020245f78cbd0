// detail::mask_rule, the one mask rule of the CPU engine and the CUDA kernels, checked against
// the fp64 reference's own plain test (reference::key_visible) for every mask, at sizes 1 and 7.
#include <attnpool/detail/mask.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace ad = attnpool::detail;
using attnpool::mask;

namespace {

// Every (i, j) of an n x n problem, read by row (key_range) and by key (mask_rule::sees).
void expect_matches_reference(const attnpool::pool_params& params, std::size_t n) {
  const ad::mask_rule rule = ad::mask_rule_of(params);
  for (std::size_t i = 0; i < n; ++i) {
    const ad::key_range keys = rule.row(i, n);
    EXPECT_LE(keys.limit, n);
    std::size_t seen = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const bool want = attnpool::reference::key_visible(params, i, j);
      const std::string where = std::string("mask=") + attnpool::to_string(params.mask) +
                                " n=" + std::to_string(n) + " i=" + std::to_string(i) +
                                " j=" + std::to_string(j);
      EXPECT_EQ(keys.sees(j), want) << where;
      EXPECT_EQ(rule.sees(i, j), want) << where;
      EXPECT_EQ(rule.skipped_query(j) == i, params.mask == mask::leave_one_out && i == j) << where;
      seen += want ? 1 : 0;
    }
    // The skip test over tiles agrees with the per-key one.
    for (std::size_t j0 = 0; j0 < n; j0 += 3) {
      const std::size_t len = std::min<std::size_t>(3, n - j0);
      const bool skipped = keys.skip >= j0 && keys.skip < j0 + len && keys.skip < keys.limit;
      EXPECT_EQ(keys.skips_in(j0, len) && keys.skip < keys.limit, skipped);
    }
    if (params.mask != mask::leave_one_out || n > 1) {
      EXPECT_GE(seen, 1u);
    }
  }
}

}  // namespace

TEST(MaskRule, NoneSeesEveryKey) {
  for (std::size_t n : {1u, 7u}) {
    attnpool::pool_params params;
    params.mask = mask::none;
    expect_matches_reference(params, n);
    const ad::key_range keys = ad::mask_rule_of(params).row(0, n);
    EXPECT_EQ(keys.limit, n);
    EXPECT_FALSE(keys.skips_in(0, n));
  }
}

TEST(MaskRule, LeaveOneOutSkipsTheQuerysOwnKey) {
  for (std::size_t n : {1u, 7u}) {
    attnpool::pool_params params;
    params.mask = mask::leave_one_out;
    expect_matches_reference(params, n);
    for (std::size_t i = 0; i < n; ++i) {
      const ad::key_range keys = ad::mask_rule_of(params).row(i, n);
      EXPECT_EQ(keys.limit, n);
      EXPECT_EQ(keys.skip, i);
      EXPECT_TRUE(keys.skips_in(i, 1));
    }
  }
}

TEST(MaskRule, ValidLengthCutsEachRow) {
  const std::vector<std::size_t> one{1};
  const std::vector<std::size_t> seven{1, 7, 3, 7, 2, 5, 4};
  for (const auto* lens : {&one, &seven}) {
    attnpool::pool_params params;
    params.mask = mask::valid_length;
    params.valid_lens = *lens;
    const std::size_t n = lens->size();
    expect_matches_reference(params, n);
    for (std::size_t i = 0; i < n; ++i) {
      const ad::key_range keys = ad::mask_rule_of(params).row(i, n);
      EXPECT_EQ(keys.limit, (*lens)[i]);
      EXPECT_FALSE(keys.skips_in(0, n));
    }
  }
}
