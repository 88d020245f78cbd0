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

// The GPU's three phases as host loops: rows, then keys window by window, then dh in double.
grads run_agents(const problem& p, const std::vector<float>& dout, const pool_params& params) {
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
    for (std::size_t i = 0; i < p.n; ++i) attnpool::kernels::backward_row<D, kDv1>(a, i);
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

void check(const problem& p, const pool_params& params) {
  SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
               " mask=" + attnpool::to_string(params.mask));
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const grads g = run_agents(p, dout, params);
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

}  // namespace
