// The GPU backward pass's arithmetic on the CPU: kernels/backward/thread_ops.hpp holds the per-row
// and per-key work that the CUDA kernels run one thread at a time; here the same functions run
// in plain loops over every row and key (with the shared exp2_poly in place of the hardware
// ex2) and are checked against the fp64 oracle with the error model of tests/learn/
// test_backward.cpp. So the GPU code's maths (masks, the one-pass row sums, the value windows,
// the d padding) is tested in CI without a GPU; tests/cuda/test_cuda_learn.cpp runs the
// kernels themselves where a device exists.
#include <attnpool/learn.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backward/thread_ops.hpp"
#include "learn_support.hpp"
#include "test_support.hpp"

namespace {

using attnpool::mask;
using attnpool::pool_params;
using attnpool::test::expect_gradient_close;
using attnpool::test::fresh_seed;
using attnpool::test::make_problem;
using attnpool::test::problem;
using attnpool::test::random_dout;
using attnpool::test::random_lens;

constexpr std::size_t kPad = 2;

struct grads {
  std::vector<float> dq, dk, dv;  // ld = cols + kPad, pads NaN
  double dh = 0.0;
};

// Splits of the tiled kernels' walks: 0 lets plan_backward_split choose (for a GPU of kSms
// SMs), else that many ranges; negative: the untiled kernels.
struct walk {
  int rows = -1, keys = -1;
};
constexpr int kSms = 132;

// The tiled rows phase as the GPU runs it (kernels/backward/agent.cuh): per key range, tile by
// tile, each tile staged by load_key_tile as one thread would, every row accumulated from it;
// then the ranges merged by finish_row_splits (or one range finished directly).
template <int D, bool kDv1>
void tiled_rows(const attnpool::kernels::backward_args& a, int forced) {
  namespace k = attnpool::kernels;
  using tiled = k::backward_tiled_traits<D>;
  const k::backward_split sp =
      k::plan_backward_split(k::backward_blocks<D>(a.n), a.n, a.m, tiled::kTile, tiled::kRowPartial,
                             kSms, static_cast<std::size_t>(forced));
  std::vector<float> ks(tiled::kTile * D), vs(tiled::kTile);
  std::vector<float> partials(sp.splits * a.n * tiled::kRowPartial);
  for (std::size_t y = 0; y < sp.splits; ++y) {
    std::vector<k::row_sums<D>> st(a.n);
    const std::size_t j_begin = y * sp.per_split, j_end = std::min(j_begin + sp.per_split, a.m);
    for (std::size_t t0 = j_begin; t0 < j_end; t0 += tiled::kTile) {
      const int len = static_cast<int>(std::min<std::size_t>(tiled::kTile, j_end - t0));
      std::fill(ks.begin(), ks.end(), std::nanf(""));  // a key outside the tile would show
      k::load_key_tile<D, kDv1>(a, t0, len, ks.data(), vs.data(), 0, 1);
      for (std::size_t i = 0; i < a.n; ++i) {
        const k::query_row<D> r(a, i);
        k::accumulate_row<D, kDv1>(a, i, r.q, r.dout, r.dout0, t0, t0 + len,
                                   k::tile_key_source<D>{a, ks.data(), vs.data(), t0}, st[i]);
      }
    }
    for (std::size_t i = 0; i < a.n; ++i) {
      if (sp.splits == 1) {
        k::finish_row<D>(a, i, st[i]);
      } else {
        k::store_row_sums<D>(partials.data() + (y * a.n + i) * tiled::kRowPartial, st[i]);
      }
    }
  }
  if (sp.splits > 1)
    for (std::size_t i = 0; i < a.n; ++i) k::finish_row_splits<D>(a, i, sp.splits, partials.data());
}

// The tiled keys phase likewise: per query range and value window, query tiles staged by
// load_query_tile, then finish_key_splits (or finish_key for one range).
template <int D, bool kDv1>
void tiled_keys(const attnpool::kernels::backward_args& a, int forced) {
  namespace k = attnpool::kernels;
  using tiled = k::backward_tiled_traits<D>;
  constexpr int kW = k::backward_value_window<D, kDv1>;
  const int windows = (a.dv + kW - 1) / kW;
  const std::size_t kP = k::key_partial_floats<D>(a.dv);
  const k::backward_split sp =
      k::plan_backward_split(k::backward_blocks<D>(a.m) * static_cast<std::size_t>(windows), a.m,
                             a.n, tiled::kTile, kP, kSms, static_cast<std::size_t>(forced));
  std::vector<float> qs(tiled::kTile * D), l2(tiled::kTile), ds(tiled::kTile), d0(tiled::kTile);
  std::vector<float> partials(sp.splits * a.m * kP);
  for (std::size_t z = 0; z < sp.splits; ++z) {
    for (int w = 0; w < windows; ++w) {
      const int col0 = w * kW, cols = std::min(kW, a.dv - col0);
      std::vector<k::key_sums<D, kW>> st(a.m);
      const std::size_t i_begin = z * sp.per_split, i_end = std::min(i_begin + sp.per_split, a.n);
      for (std::size_t t0 = i_begin; t0 < i_end; t0 += tiled::kTile) {
        const int len = static_cast<int>(std::min<std::size_t>(tiled::kTile, i_end - t0));
        std::fill(qs.begin(), qs.end(), std::nanf(""));
        k::load_query_tile<D>(a, t0, len, qs.data(), l2.data(), ds.data(), d0.data(), 0, 1);
        for (std::size_t j = 0; j < a.m; ++j) {
          float kj[D];
          for (int c = 0; c < D; ++c) kj[c] = c < a.d ? a.k[j * a.ldk + c] : 0.0f;
          const float* vj = a.v + j * a.ldv;
          k::accumulate_key<D, kDv1, kW>(
              a, j, kj, vj, vj[0], col0, cols, t0, t0 + len,
              k::tile_query_source<D>{qs.data(), l2.data(), ds.data(), d0.data(), t0}, st[j]);
        }
      }
      for (std::size_t j = 0; j < a.m; ++j) {
        if (sp.splits == 1) {
          k::finish_key<D, kW>(a, j, col0, cols, w == 0, st[j]);
        } else {
          k::store_key_sums<D, kW>(partials.data() + (z * a.m + j) * kP, col0, cols, w == 0, st[j]);
        }
      }
    }
  }
  if (sp.splits > 1)
    for (std::size_t j = 0; j < a.m; ++j) k::finish_key_splits<D>(a, j, sp.splits, partials.data());
}

// The GPU's three phases as host loops: rows, then keys window by window, then dh in double;
// the untiled kernels' order, or the tiled kernels' with `how`'s ranges.
grads run_agents(const problem& p, const std::vector<float>& dout, const pool_params& params,
                 walk how = {}) {
  grads g{std::vector<float>(p.n * (p.d + kPad)), std::vector<float>(p.m * (p.d + kPad)),
          std::vector<float>(p.m * (p.dv + kPad))};
  attnpool::test::poison(g.dq);
  attnpool::test::poison(g.dk);
  attnpool::test::poison(g.dv);
  std::vector<float> lse2(p.n), dsum(p.n), dh_rows(p.n);
  attnpool::kernels::backward_args a;
  a.q = p.q.data();
  a.k = p.k.data();
  a.v = p.v.data();
  a.dout = dout.data();
  a.ldq = a.ldk = p.d + p.pad;
  a.ldv = p.dv + p.pad;
  a.lddo = p.dv;
  a.n = p.n;
  a.m = p.m;
  a.d = static_cast<int>(p.d);
  a.dv = static_cast<int>(p.dv);
  a.score_constant = static_cast<float>(-attnpool::detail::gaussian_log2_scale(params.bandwidth));
  a.inv_h2 = 1.0 / (params.bandwidth * params.bandwidth);
  a.mask = attnpool::detail::mask_rule_of(params);
  a.lse2 = lse2.data();
  a.dsum = dsum.data();
  a.dh_rows = dh_rows.data();
  a.dq = g.dq.data();
  a.dk = g.dk.data();
  a.dvv = g.dv.data();
  a.lddq = a.lddk = p.d + kPad;
  a.lddv = p.dv + kPad;
  attnpool::kernels::dispatch_backward(p.d, a.dv, [&](auto dc, auto dv1) {
    constexpr int D = decltype(dc)::value;
    constexpr bool kDv1 = decltype(dv1)::value;
    constexpr int kW = attnpool::kernels::backward_value_window<D, kDv1>;
    if (how.rows >= 0) {
      tiled_rows<D, kDv1>(a, how.rows);
    } else {
      for (std::size_t i = 0; i < p.n; ++i) attnpool::kernels::backward_row<D, kDv1>(a, i);
    }
    if (how.keys >= 0) {
      tiled_keys<D, kDv1>(a, how.keys);
      return;
    }
    const int windows = (a.dv + kW - 1) / kW;
    for (int w = 0; w < windows; ++w)
      for (std::size_t j = 0; j < p.m; ++j)
        attnpool::kernels::backward_key<D, kDv1, kW>(a, j, w * kW, std::min(kW, a.dv - w * kW),
                                                     w == 0);
  });
  double dh = 0.0;
  for (float x : dh_rows) dh += static_cast<double>(x);
  g.dh = dh * a.inv_h2 / params.bandwidth;
  return g;
}

void check(const problem& p, const pool_params& params, walk how = {}) {
  SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
               " mask=" + attnpool::to_string(params.mask) + " splits=" + std::to_string(how.rows) +
               "/" + std::to_string(how.keys));
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const grads g = run_agents(p, dout, params, how);
  const auto ref = attnpool::reference::pool_backward(p.queries(), p.keys(), p.values(),
                                                      {dout.data(), p.n, p.dv}, params);
  expect_gradient_close("dq", g.dq, p.n, p.d, kPad, ref.dq, ref.dq_scale, ref.dq_bound);
  expect_gradient_close("dk", g.dk, p.m, p.d, kPad, ref.dk, ref.dk_scale, ref.dk_bound);
  expect_gradient_close("dv", g.dv, p.m, p.dv, kPad, ref.dv, ref.dv_scale, ref.dv_bound);
  EXPECT_NEAR(g.dh, ref.dh, 1e-5 * ref.dh_scale + ref.dh_bound + 1e-30);
}

TEST(BackwardAgent, MatchesTheOracle) {
  for (auto [n, m] :
       {std::pair<std::size_t, std::size_t>{1, 1}, {7, 7}, {129, 300}, {300, 129}, {40, 1500}}) {
    for (std::size_t d : {1, 3, 16}) {
      for (std::size_t dv : {1, 3, 9}) {  // 9: two value windows of the key phase
        for (double h : {0.1, 0.5, 3.0}) check(make_problem(n, m, d, dv, fresh_seed()), {h});
      }
    }
  }
  // Extreme bandwidths; far keys at small h (|scores| ~ 1e7); d = 33 padded to 64, and d = 64.
  for (double h : {1e-3, 1e3}) {
    check(make_problem(129, 300, 2, 2, fresh_seed()), {h});
    pool_params loo{h};
    loo.mask = mask::leave_one_out;
    check(make_problem(200, 200, 1, 1, fresh_seed()), loo);
  }
  check(make_problem(60, 50, 2, 2, fresh_seed(), 30.0f), {1e-2});
  check(make_problem(30, 40, 33, 1, fresh_seed()), {2.0});
  check(make_problem(30, 40, 64, 2, fresh_seed()), {2.0});
}

TEST(BackwardAgent, MatchesTheOracleWithMasks) {
  for (std::size_t n : {2, 7, 129, 1025}) {
    for (std::size_t d : {1, 3}) {
      for (std::size_t dv : {1, 2, 9}) {
        const problem p = make_problem(n, n, d, dv, fresh_seed());
        pool_params loo{0.3};
        loo.mask = mask::leave_one_out;
        check(p, loo);
        const auto lens = random_lens(p.n, p.m, p.seed);
        pool_params vl{0.3};
        vl.mask = mask::valid_length;
        vl.valid_lens = lens;
        check(p, vl);
      }
    }
  }
  for (auto [n, m] : {std::pair<std::size_t, std::size_t>{1, 1}, {1, 50}, {40, 1}, {300, 77}}) {
    const problem p = make_problem(n, m, 2, 3, fresh_seed());
    const auto lens = random_lens(p.n, p.m, p.seed);
    pool_params vl{0.4};
    vl.mask = mask::valid_length;
    vl.valid_lens = lens;
    check(p, vl);
  }
}

// The tiled kernels' walk: key ranges for the rows phase and query ranges for the keys phase
// (1, 2, 3, 7 and as many as the tiles), partial tiles, masks; the merges' sums against the
// oracle, and one range bitwise the untiled kernels.
TEST(BackwardAgent, TiledRangesMatchTheOracle) {
  for (auto [n, m] : {std::pair<std::size_t, std::size_t>{1, 1}, {7, 7}, {129, 3000}, {2100, 40}}) {
    for (std::size_t d : {1, 3, 16}) {
      for (std::size_t dv : {1, 9}) {
        const problem p = make_problem(n, m, d, dv, fresh_seed());
        for (int s : {1, 2, 3, 7, 64}) check(p, {0.5}, {s, s});
        check(p, {0.5}, {0, 0});  // the plan's own choice for a 132-SM GPU
      }
    }
  }
  for (std::size_t n : {7, 1500}) {
    const problem p = make_problem(n, n, 2, 3, fresh_seed());
    pool_params loo{0.3};
    loo.mask = mask::leave_one_out;
    check(p, loo, {3, 2});
    const auto lens = random_lens(p.n, p.m, p.seed);
    pool_params vl{0.3};
    vl.mask = mask::valid_length;
    vl.valid_lens = lens;
    check(p, vl, {3, 2});
  }
  check(make_problem(300, 2000, 64, 2, fresh_seed()), {2.0}, {4, 3});
  check(make_problem(200, 1200, 1, 1, fresh_seed(), 30.0f), {1e-2}, {5, 5});  // far keys
}

TEST(BackwardAgent, OneTiledRangeIsBitwiseTheUntiledKernels) {
  for (std::size_t d : {1, 3, 16}) {
    for (std::size_t dv : {1, 9}) {
      const problem p = make_problem(129, 3000, d, dv, fresh_seed());
      const auto dout = random_dout(p.n, p.dv, p.seed);
      const grads untiled = run_agents(p, dout, {0.7});
      const grads tiled = run_agents(p, dout, {0.7}, {1, 1});
      SCOPED_TRACE(attnpool::test::describe(p, 0.7));
      EXPECT_EQ(0, std::memcmp(untiled.dq.data(), tiled.dq.data(), 4 * untiled.dq.size()));
      EXPECT_EQ(0, std::memcmp(untiled.dk.data(), tiled.dk.data(), 4 * untiled.dk.size()));
      EXPECT_EQ(0, std::memcmp(untiled.dv.data(), tiled.dv.data(), 4 * untiled.dv.size()));
      EXPECT_EQ(untiled.dh, tiled.dh);
    }
  }
}

TEST(BackwardAgent, RangePlansCoverTheWalkInWholeTiles) {
  namespace k = attnpool::kernels;
  for (std::size_t walked : {1, 7, 1024, 1025, 65536, 1000000}) {
    for (std::size_t blocks : {1, 8, 512, 100000}) {
      for (std::size_t forced : {0, 1, 5, 1000}) {
        const k::backward_split sp =
            k::plan_backward_split(blocks, blocks * 128, walked, 256, 7, kSms, forced);
        SCOPED_TRACE(std::to_string(walked) + " " + std::to_string(blocks) + " " +
                     std::to_string(forced));
        EXPECT_GE(sp.splits, 1u);
        EXPECT_LE(sp.splits, forced > 0 ? forced : k::kMaxBackwardSplits);
        EXPECT_EQ(sp.per_split % 256, 0u);
        EXPECT_GE(sp.splits * sp.per_split, walked);        // every item in a range
        EXPECT_LT((sp.splits - 1) * sp.per_split, walked);  // and no range empty
        if (forced == 0) {
          EXPECT_LE(sp.splits * blocks * 128 * 7 * sizeof(float),
                    std::max<std::size_t>(k::kMaxPartialBytes, blocks * 128 * 7 * 4));
        }
      }
    }
  }
  // A GPU that one unsplit grid fills takes one range; a small grid takes several.
  EXPECT_EQ(k::plan_backward_split(4096, 4096 * 128, 65536, 1024, 7, kSms).splits, 1u);
  EXPECT_GT(k::plan_backward_split(512, 512 * 128, 65536, 1024, 7, kSms).splits, 1u);
}

}  // namespace
