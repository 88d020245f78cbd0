// The key-parallel ("decode") forward on the CPU, without a GPU:
// - its plan (kernels/fused/decode_plan.hpp): every key in exactly one split, no empty split,
//   splits within gridDim.z's limit, rows and value windows covered, the same plan every call;
// - its arithmetic (kernels/fused/decode_thread_ops.hpp): the functions fused_decode_kernel runs,
//   driven as the GPU drives them (every thread of every block walks its strided keys, the warps'
//   fixed tree, the warps in order, the split-K partial layout, then the merge kernel's order:
//   lane l takes splits l, l + 32, ..., then the same tree), against the fp64 reference on random
//   data with printed seeds: m in {1, 7, 129, 4097, 2^16}, n in {1, 7, 64}, bandwidths 1e-3 and
//   1e3, keys 1e4 away, several value windows. The host's exp2 is the shared exp2_poly where the
//   GPU has ex2.approx; tests/cuda/test_cuda_decode.cpp runs the kernel itself.
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <vector>

#include "kernels/fused/decode_plan.hpp"
#include "kernels/fused/decode_thread_ops.hpp"
#include "test_support.hpp"

namespace ak = attnpool::kernels;
namespace at = attnpool::test;

namespace {

constexpr int kH100Sms = 132;

void expect_plan_valid(const ak::fused_plan& p, std::size_t n, std::size_t m, std::size_t d,
                       std::size_t dv) {
  SCOPED_TRACE("n=" + std::to_string(n) + " m=" + std::to_string(m) + " d=" + std::to_string(d) +
               " dv=" + std::to_string(dv));
  ASSERT_GE(p.splits, 1);
  ASSERT_LE(p.splits, 65535);
  ASSERT_LE(static_cast<std::size_t>(p.splits), m);
  ASSERT_GE(p.keys_per_split, 1u);
  const auto s = static_cast<std::size_t>(p.splits);
  // Every key in exactly one range [z kps, min(m, (z + 1) kps)), and the last range not empty.
  EXPECT_GE(s * p.keys_per_split, m);
  EXPECT_LT((s - 1) * p.keys_per_split, m);
  if (m <= 4097) {
    std::vector<int> seen(m, 0);
    for (std::size_t z = 0; z < s; ++z) {
      const std::size_t end = std::min(m, (z + 1) * p.keys_per_split);
      ASSERT_LT(z * p.keys_per_split, end) << "empty split " << z;
      for (std::size_t j = z * p.keys_per_split; j < end; ++j) ++seen[j];
    }
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
  }
  EXPECT_TRUE(p.rows_per_block == 1 || p.rows_per_block == 4 || p.rows_per_block == 8);
  EXPECT_EQ(p.rows_per_block == 1, n == 1);
  EXPECT_GE(p.grid_x * p.rows_per_block, n);
  EXPECT_LT((p.grid_x - 1) * p.rows_per_block, n);
  EXPECT_LE(p.dv_bucket, 8);
  EXPECT_GE(static_cast<std::size_t>(p.grid_y) * static_cast<std::size_t>(p.dv_bucket), dv);
  EXPECT_LT(static_cast<std::size_t>(p.grid_y - 1) * static_cast<std::size_t>(p.dv_bucket), dv);
  EXPECT_GE(static_cast<std::size_t>(p.d_bucket), d);
}

TEST(decode_plan, covers_every_key_once_within_limits) {
  for (std::size_t m :
       {std::size_t{1}, std::size_t{7}, std::size_t{129}, std::size_t{1023}, std::size_t{4097},
        std::size_t{1} << 16, std::size_t{1} << 20, std::size_t{1} << 34})
    for (std::size_t n : {1, 2, 7, 9, 64})
      for (std::size_t d : {1, 2, 3, 5, 8})
        for (std::size_t dv : {1, 3, 8, 9, 100})
          for (int sms : {1, kH100Sms, 100000})
            for (int forced : {0, 1, 3, 70000}) {
              const ak::fused_plan p = ak::plan_decode(n, m, d, dv, sms, forced);
              expect_plan_valid(p, n, m, d, dv);
              if (forced > 0) {
                EXPECT_EQ(p.splits, ak::plan_decode(n, m, d, dv, 1, forced).splits);
              }
            }
}

TEST(decode_plan, fills_the_gpu_without_short_splits) {
  // n = 1, m = 2^20, d = dv = 1 on an H100: 132 x 4 = 528 blocks would take 1986 keys each;
  // rounded up to whole steps of 256 threads x 4 keys, 512 splits of 2048 (8 keys a thread).
  const ak::fused_plan p = ak::plan_decode(1, std::size_t{1} << 20, 1, 1, kH100Sms);
  EXPECT_EQ(p.splits, 512);
  EXPECT_EQ(p.keys_per_split, 2048u);
  EXPECT_EQ(p.grid_x, 1u);
  EXPECT_EQ(p.grid_y, 1u);
  // Few keys: no split shorter than kMinKeysPerSplit (one unrolled step of every thread).
  for (std::size_t m : {100, 1024, 4097, 65536}) {
    const ak::fused_plan q = ak::plan_decode(7, m, 2, 3, kH100Sms);
    constexpr std::size_t kMinKeys = ak::decode_traits<2, 4>::kMinKeysPerSplit;
    if (q.splits > 1) {
      EXPECT_GE(q.keys_per_split, kMinKeys);
    }
  }
  // n = 64: 8 row groups of 8 rows share the SMs: 66 splits of 15888 keys, rounded to 64 of 16384.
  const ak::fused_plan r = ak::plan_decode(64, std::size_t{1} << 20, 1, 1, kH100Sms);
  EXPECT_EQ(r.grid_x, 8u);
  EXPECT_EQ(r.splits, 64);
  // Every split of a heuristic plan but the last is whole steps of every thread.
  for (std::size_t m : {4097, 65536, 1 << 20, 3 << 20}) {
    const ak::fused_plan h = ak::plan_decode(1, m, 1, 1, kH100Sms);
    if (h.splits > 1) {
      EXPECT_EQ(h.keys_per_split % (ak::decode_traits<1, 1>::kMinKeysPerSplit), 0u) << "m=" << m;
    }
  }
}

TEST(decode_plan, is_deterministic) {
  for (std::size_t m : {1, 129, 1 << 20}) {
    const ak::fused_plan a = ak::plan_decode(7, m, 3, 5, kH100Sms);
    const ak::fused_plan b = ak::plan_decode(7, m, 3, 5, kH100Sms);
    EXPECT_EQ(a.splits, b.splits);
    EXPECT_EQ(a.keys_per_split, b.keys_per_split);
    EXPECT_EQ(a.grid_x, b.grid_x);
    EXPECT_EQ(a.grid_y, b.grid_y);
    EXPECT_EQ(a.rows_per_block, b.rows_per_block);
    EXPECT_EQ(a.d_bucket, b.d_bucket);
    EXPECT_EQ(a.dv_bucket, b.dv_bucket);
  }
}

TEST(decode_plan, serves_only_skinny_small_d_shapes) {
  EXPECT_TRUE(ak::decode_serves(1, 1, 1, 1));
  EXPECT_TRUE(ak::decode_serves(64, 1 << 20, 8, 1000));
  EXPECT_FALSE(ak::decode_serves(65, 1 << 20, 1, 1));
  EXPECT_FALSE(ak::decode_serves(0, 1 << 20, 1, 1));
  EXPECT_FALSE(ak::decode_serves(1, 0, 1, 1));
  EXPECT_FALSE(ak::decode_serves(1, 1 << 20, 9, 1));
  EXPECT_FALSE(ak::decode_serves(1, 1 << 20, 0, 1));
  EXPECT_FALSE(ak::decode_serves(1, 1 << 20, 1, 0));
}

// ---- the arithmetic ----------------------------------------------------------------------------

// fused_decode_kernel's blocks, one after another, for a configuration (D, DV, R).
template <int D, int DV, int R>
void run_blocks(const ak::fused_args& a, const ak::fused_plan& plan) {
  using traits = ak::decode_traits<D, DV>;
  using state = ak::decode_state<DV, R>;
  std::vector<state> lanes(traits::kThreads);
  std::vector<state> warps(traits::kWarps);
  for (unsigned z = 0; z < static_cast<unsigned>(plan.splits); ++z)
    for (unsigned y = 0; y < plan.grid_y; ++y)
      for (unsigned x = 0; x < plan.grid_x; ++x) {
        const std::size_t row0 = static_cast<std::size_t>(x) * R;
        const int col0 = static_cast<int>(y) * DV;
        const int cols = std::min(DV, a.dv - col0);
        const std::size_t begin = static_cast<std::size_t>(z) * a.keys_per_split;
        const std::size_t end = std::min(a.m, begin + a.keys_per_split);
        float q[R][D];
        ak::decode_load_queries<D, R>(a, row0, q);
        for (int t = 0; t < traits::kThreads; ++t) {
          lanes[static_cast<std::size_t>(t)] = state{};
          ak::decode_walk<D, DV, R, traits::kUnroll>(a, q, begin, end, static_cast<std::size_t>(t),
                                                     traits::kThreads, col0, cols,
                                                     lanes[static_cast<std::size_t>(t)]);
        }
        for (int w = 0; w < traits::kWarps; ++w) {
          ak::decode_warp_tree(&lanes[static_cast<std::size_t>(32 * w)]);
          warps[static_cast<std::size_t>(w)] = lanes[static_cast<std::size_t>(32 * w)];
        }
        ak::decode_store(a, ak::decode_merge_warps(warps.data(), traits::kWarps), row0, z, y, col0,
                         cols);
      }
}

// The merge kernel (kernels/merge/merge.cu) on split-K's partial layout: per output element,
// lane l merges splits l, l + 32, ... in order, then the 32 lanes by the fixed tree.
void merge_splits(const ak::fused_args& a, int splits) {
  using one = ak::decode_state<1, 1>;
  const auto dv = static_cast<std::size_t>(a.dv);
  for (std::size_t row = 0; row < a.n; ++row)
    for (std::size_t c = 0; c < dv; ++c) {
      one lanes[32];
      for (int l = 0; l < 32; ++l)
        for (int z = l; z < splits; z += 32) {
          const std::size_t slot = static_cast<std::size_t>(z) * a.n + row;
          one s;
          s.softmax[0] = {a.partial_state[2 * slot], a.partial_state[2 * slot + 1]};
          s.acc[0][0] = a.partial_acc[slot * dv + c];
          ak::decode_merge(lanes[l], s);
        }
      ak::decode_warp_tree(lanes);
      a.out[row * a.ldo + c] = lanes[0].acc[0][0] * lanes[0].softmax[0].inv_sum();
    }
}

// The whole call as the GPU would run it; returns the output with ld = dv + kOutPad.
constexpr std::size_t kOutPad = 2;
std::vector<float> run_decode(const at::problem& p, double h, int forced_splits) {
  const ak::fused_plan plan = ak::plan_decode(p.n, p.m, p.d, p.dv, kH100Sms, forced_splits);
  std::vector<float> out(p.n * (p.dv + kOutPad));
  at::poison(out);
  const auto s = static_cast<std::size_t>(plan.splits);
  std::vector<float> state(s * p.n * 2), acc(s * p.n * p.dv);
  at::poison(state);
  at::poison(acc);
  ak::fused_args a;
  static_cast<ak::problem_args&>(a) = ak::problem_args_of(p.queries(), p.keys(), p.values());
  a.out = out.data();
  a.ldo = p.dv + kOutPad;
  a.score_constant = attnpool::detail::kernel_constant(attnpool::kernel::gaussian, h);
  a.splits = plan.splits;
  a.keys_per_split = plan.keys_per_split;
  if (plan.splits > 1) {  // launch_split_k's convention
    a.partial_state = state.data();
    a.partial_acc = acc.data();
  }
  ak::decode_d_buckets::dispatch(p.d, [&](auto dc) {
    ak::decode_dv_buckets::dispatch(p.dv, [&](auto dvc) {
      constexpr int D = decltype(dc)::value, DV = decltype(dvc)::value;
      if (plan.rows_per_block == 1) {
        run_blocks<D, DV, 1>(a, plan);
      } else {
        run_blocks<D, DV, ak::decode_traits<D, DV>::kRows>(a, plan);
      }
    });
  });
  if (plan.splits > 1) merge_splits(a, plan.splits);
  return out;
}

struct arith_case {
  std::size_t n, m, d, dv;
  double h;
  float key_offset;
  int splits;  // 0 = the plan's heuristic
};

double check_case(const arith_case& c) {
  const at::problem p = at::make_problem(c.n, c.m, c.d, c.dv, at::fresh_seed(), c.key_offset);
  SCOPED_TRACE(at::describe(p, c.h) + " key_offset=" + std::to_string(c.key_offset) +
               " splits=" + std::to_string(c.splits));
  const attnpool::pool_params params{c.h};
  const std::vector<float> out = run_decode(p, c.h, c.splits);
  return at::expect_matches_reference(
      p, params, out.data(), p.dv + kOutPad,
      attnpool::reference::pool(p.queries(), p.keys(), p.values(), params));
}

void report(const char* what, double worst) {
  std::printf("[decode host] %s: worst |err| / tolerance = %.3g\n", what, worst);
}

TEST(decode_arith, matches_reference_across_sizes) {
  double worst = 0.0;
  for (std::size_t m :
       {std::size_t{1}, std::size_t{7}, std::size_t{129}, std::size_t{4097}, std::size_t{1} << 16})
    for (std::size_t n : {1, 7, 64}) worst = std::max(worst, check_case({n, m, 1, 1, 0.3, 0, 0}));
  report("d = dv = 1, h = 0.3", worst);
}

TEST(decode_arith, matches_reference_at_extreme_bandwidths_and_far_keys) {
  double worst = 0.0;
  for (double h : {1e-3, 1e3})
    for (float off : {0.0f, 1e4f})
      for (std::size_t n : {1, 7, 64})
        for (std::size_t m : {129, 4097, 1 << 16})
          worst = std::max(worst, check_case({n, m, 1, 1, h, off, 0}));
  report("d = dv = 1, h in {1e-3, 1e3}, offsets {0, 1e4}", worst);
}

TEST(decode_arith, matches_reference_across_dims_and_value_windows) {
  double worst = 0.0;
  for (std::size_t d : {2, 3, 5, 8})
    for (std::size_t dv : {1, 3, 8, 9})
      for (std::size_t n : {1, 7, 64})
        worst = std::max(worst, check_case({n, 4097, d, dv, 0.5, 0, 0}));
  for (std::size_t d : {3, 8})
    for (double h : {1e-3, 1e3}) worst = std::max(worst, check_case({7, 4097, d, 3, h, 1e4f, 0}));
  report("d in {2, 3, 5, 8}, dv in {1, 3, 8, 9}", worst);
}

TEST(decode_arith, matches_reference_with_forced_splits) {
  double worst = 0.0;
  // 1: no split-K, the kernel writes the normalised output; 3 and 33: the merge's lanes wrap.
  for (int s : {1, 3, 33})
    for (std::size_t n : {1, 7, 64})
      worst = std::max(worst, check_case({n, 4097, 1, 3, 0.3, 0, s}));
  report("forced splits 1, 3, 33", worst);
}

}  // namespace
