// Learning on the GPU: masks in the fused forward, the fused backward pass (host and
// device-pointer API) and train_parametric on backend cuda_fused, each against the fp64 oracle
// on fresh random data with printed seeds. Every case skips without a device.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda_test_support.hpp"
#include "learn_support.hpp"

namespace {

using attnpool::backend;
using attnpool::const_view;
using attnpool::mask;
using attnpool::mutable_view;
using attnpool::pool_params;
using attnpool::test::book_data;
using attnpool::test::dataset;
using attnpool::test::expect_gradient_close;
using attnpool::test::fresh_seed;
using attnpool::test::make_problem;
using attnpool::test::opts_for;
using attnpool::test::problem;
using attnpool::test::random_dout;
using attnpool::test::random_lens;

// ---- masked forward ------------------------------------------------------------------------

TEST(CudaMaskedForward, MatchesTheReference) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (std::size_t size : {1, 7, 129, 4097}) {
    for (std::size_t d : {1, 3}) {
      for (std::size_t dv : {1, 3}) {
        for (double h : {1e-3, 0.3, 1e3}) {
          if (size == 4097 && (d != 1 || dv != 3)) continue;  // keep the suite short
          const problem p = make_problem(size, size, d, dv, fresh_seed());
          if (size >= 2) {
            pool_params loo{h};
            loo.mask = mask::leave_one_out;
            attnpool::test::check_pool_against_reference(p, loo, backend::cuda_fused);
          }
          const auto lens = random_lens(p.n, p.m, p.seed);
          pool_params vl{h};
          vl.mask = mask::valid_length;
          vl.valid_lens = lens;
          attnpool::test::check_pool_against_reference(p, vl, backend::cuda_fused);
        }
      }
    }
  }
}

// Split-K cuts the keys into ranges; with valid_length most rows see no key at all in the later
// ranges (an empty partial state), and with leave_one_out the skipped key sits in one range.
TEST(CudaMaskedForward, SplitKAndDeviceApiMatchTheReference) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (std::size_t n : {7, 600}) {
    const std::size_t m = 3000;
    const problem p = make_problem(n, m, 2, 5, fresh_seed());
    const auto lens = random_lens(n, m, p.seed);
    pool_params vl{0.2};
    vl.mask = mask::valid_length;
    vl.valid_lens = lens;
    const auto ref = attnpool::reference::pool(p.queries(), p.keys(), p.values(), vl);
    for (int splits : {1, 4, 0}) {
      SCOPED_TRACE(attnpool::test::describe(p, 0.2) +
                   " valid_length splits=" + std::to_string(splits));
      const auto out = attnpool::test::run_fused(p, vl, splits);
      attnpool::test::expect_matches_reference(p, vl, out.data(), p.dv + 2, ref);
    }
  }
  const problem sq = make_problem(2500, 2500, 3, 2, fresh_seed());
  pool_params loo{0.1};
  loo.mask = mask::leave_one_out;
  const auto ref = attnpool::reference::pool(sq.queries(), sq.keys(), sq.values(), loo);
  for (int splits : {1, 3}) {
    SCOPED_TRACE(attnpool::test::describe(sq, 0.1) +
                 " leave_one_out splits=" + std::to_string(splits));
    const auto out = attnpool::test::run_fused(sq, loo, splits);
    attnpool::test::expect_matches_reference(sq, loo, out.data(), sq.dv + 2, ref);
  }
  // cuda::pool with its public workspace query (valid_lens copied into the workspace).
  const problem p = make_problem(129, 129, 1, 1, fresh_seed());
  const auto lens = random_lens(p.n, p.m, p.seed);
  pool_params vl{0.5};
  vl.mask = mask::valid_length;
  vl.valid_lens = lens;
  SCOPED_TRACE(attnpool::test::describe(p, 0.5) + " cuda::pool valid_length");
  const auto out = attnpool::test::run_pool(p, vl, backend::cuda_fused);
  attnpool::test::expect_matches_reference(
      p, vl, out.data(), p.dv + 2,
      attnpool::reference::pool(p.queries(), p.keys(), p.values(), vl));
}

// A masked call takes the generic-score path; a compact kernel plus a mask may leave a row with no
// key in the support, which follows the empty-row policy (here nan).
TEST(CudaMaskedForward, CompactKernelWithMaskFollowsTheEmptyRowPolicy) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(300, 300, 1, 2, fresh_seed());
  pool_params params{0.01};
  params.kernel = attnpool::kernel::epanechnikov;
  params.empty = attnpool::empty_support::nan;
  params.mask = mask::leave_one_out;
  attnpool::test::check_pool_against_reference(p, params, backend::cuda_fused);
}

// ---- backward -------------------------------------------------------------------------------

struct grads32 {
  std::vector<float> dq, dk, dv;  // padded: ld = cols + 2, pads NaN
  double dh = std::nan("");
};

constexpr std::size_t kGradPad = 2;

// pool_backward through the host API into NaN-poisoned, padded gradient buffers; `want` picks
// the subset (q, k, v, h).
grads32 run_backward(const problem& p, const std::vector<float>& dout, const pool_params& params,
                     backend b, const char* want = "qkvh") {
  grads32 g{std::vector<float>(p.n * (p.d + kGradPad)), std::vector<float>(p.m * (p.d + kGradPad)),
            std::vector<float>(p.m * (p.dv + kGradPad))};
  attnpool::test::poison(g.dq);
  attnpool::test::poison(g.dk);
  attnpool::test::poison(g.dv);
  attnpool::pool_gradients pg;
  const std::string w = want;
  if (w.find('q') != std::string::npos) pg.queries = {g.dq.data(), p.n, p.d, p.d + kGradPad};
  if (w.find('k') != std::string::npos) pg.keys = {g.dk.data(), p.m, p.d, p.d + kGradPad};
  if (w.find('v') != std::string::npos) pg.values = {g.dv.data(), p.m, p.dv, p.dv + kGradPad};
  if (w.find('h') != std::string::npos) pg.bandwidth = &g.dh;
  attnpool::pool_backward(p.queries(), p.keys(), p.values(), {dout.data(), p.n, p.dv}, pg, params,
                          opts_for(b));
  return g;
}

void check_backward(const problem& p, const pool_params& params) {
  SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
               " mask=" + attnpool::to_string(params.mask));
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const grads32 g = run_backward(p, dout, params, backend::cuda_fused);
  const auto ref = attnpool::reference::pool_backward(p.queries(), p.keys(), p.values(),
                                                      {dout.data(), p.n, p.dv}, params);
  expect_gradient_close("dq", g.dq, p.n, p.d, kGradPad, ref.dq, ref.dq_scale, ref.dq_bound);
  expect_gradient_close("dk", g.dk, p.m, p.d, kGradPad, ref.dk, ref.dk_scale, ref.dk_bound);
  expect_gradient_close("dv", g.dv, p.m, p.dv, kGradPad, ref.dv, ref.dv_scale, ref.dv_bound);
  EXPECT_NEAR(g.dh, ref.dh, 1e-5 * ref.dh_scale + ref.dh_bound + 1e-30);
}

TEST(CudaBackward, MatchesTheReference) {
  ATTNPOOL_REQUIRE_DEVICE();
  struct shape {
    std::size_t n, m;
  };
  for (shape s : {shape{1, 1}, shape{7, 7}, shape{129, 300}, shape{4097, 129}, shape{129, 4097}}) {
    for (std::size_t d : {1, 3, 16}) {
      for (std::size_t dv : {1, 3, 9}) {  // 9: two value windows of the key phase
        for (double h : {0.1, 0.5, 3.0}) {
          if ((s.n > 1000 || s.m > 1000) && (d == 3 || h == 3.0)) continue;  // suite time
          check_backward(make_problem(s.n, s.m, d, dv, fresh_seed()), {h});
        }
      }
    }
  }
  // Extreme bandwidths, with and without leave_one_out.
  for (double h : {1e-3, 1e3}) {
    check_backward(make_problem(129, 300, 2, 2, fresh_seed()), {h});
    pool_params loo{h};
    loo.mask = mask::leave_one_out;
    check_backward(make_problem(200, 200, 1, 1, fresh_seed()), loo);
  }
  // Far keys at small h: |scores| ~ 1e7, where the saved log-sum-exp must match the rows'
  // recomputed scores bitwise (__fsub_rn, no FMA contraction).
  check_backward(make_problem(300, 200, 2, 2, fresh_seed(), 30.0f), {1e-2});
  // d = 64 (the largest compiled D) and d = 33 (padded to 64).
  check_backward(make_problem(70, 90, 64, 2, fresh_seed()), {2.0});
  check_backward(make_problem(70, 90, 33, 1, fresh_seed()), {2.0});
}

TEST(CudaBackward, MatchesTheReferenceWithMasks) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (std::size_t n : {2, 7, 129, 4097}) {
    for (std::size_t d : {1, 3}) {
      for (std::size_t dv : {1, 2}) {
        if (n == 4097 && d == 3) continue;
        const problem p = make_problem(n, n, d, dv, fresh_seed());
        pool_params loo{0.3};
        loo.mask = mask::leave_one_out;
        check_backward(p, loo);
        const auto lens = random_lens(p.n, p.m, p.seed);
        pool_params vl{0.3};
        vl.mask = mask::valid_length;
        vl.valid_lens = lens;
        check_backward(p, vl);
      }
    }
  }
  // valid_length with n != m, n = 1 and m = 1.
  for (auto [n, m] : {std::pair<std::size_t, std::size_t>{1, 1}, {1, 50}, {40, 1}, {300, 77}}) {
    const problem p = make_problem(n, m, 2, 3, fresh_seed());
    const auto lens = random_lens(p.n, p.m, p.seed);
    pool_params vl{0.4};
    vl.mask = mask::valid_length;
    vl.valid_lens = lens;
    check_backward(p, vl);
  }
}

TEST(CudaBackward, RepeatableBitwiseAndIndependentOfWhichGradientsAreAsked) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(700, 1900, 3, 2, fresh_seed());
  SCOPED_TRACE(attnpool::test::describe(p, 0.2));
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const pool_params params{0.2};
  const grads32 all = run_backward(p, dout, params, backend::cuda_fused);
  const grads32 again = run_backward(p, dout, params, backend::cuda_fused);
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same_bits(all.dq, again.dq));
  EXPECT_TRUE(same_bits(all.dk, again.dk));
  EXPECT_TRUE(same_bits(all.dv, again.dv));
  EXPECT_EQ(std::memcmp(&all.dh, &again.dh, sizeof(double)), 0);
  // Each subset alone gives the same bits; what was not asked for stays NaN.
  const grads32 q = run_backward(p, dout, params, backend::cuda_fused, "q");
  EXPECT_TRUE(same_bits(q.dq, all.dq));
  EXPECT_TRUE(std::all_of(q.dk.begin(), q.dk.end(), [](float x) { return std::isnan(x); }));
  EXPECT_TRUE(std::all_of(q.dv.begin(), q.dv.end(), [](float x) { return std::isnan(x); }));
  EXPECT_TRUE(std::isnan(q.dh));
  const grads32 k = run_backward(p, dout, params, backend::cuda_fused, "k");
  EXPECT_TRUE(same_bits(k.dk, all.dk));
  EXPECT_TRUE(std::all_of(k.dq.begin(), k.dq.end(), [](float x) { return std::isnan(x); }));
  const grads32 v = run_backward(p, dout, params, backend::cuda_fused, "v");
  EXPECT_TRUE(same_bits(v.dv, all.dv));
  EXPECT_TRUE(std::all_of(v.dk.begin(), v.dk.end(), [](float x) { return std::isnan(x); }));
  const grads32 h = run_backward(p, dout, params, backend::cuda_fused, "h");
  EXPECT_EQ(std::memcmp(&h.dh, &all.dh, sizeof(double)), 0);
  EXPECT_TRUE(std::all_of(h.dq.begin(), h.dq.end(), [](float x) { return std::isnan(x); }));
  // automatic is cuda_fused where a device exists.
  const grads32 automatic = run_backward(p, dout, params, backend::automatic);
  EXPECT_TRUE(same_bits(automatic.dq, all.dq));
}

TEST(CudaBackward, DeviceApiMatchesTheHostApiAndChecksDout) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(129, 257, 2, 3, fresh_seed());
  SCOPED_TRACE(attnpool::test::describe(p, 0.3));
  const auto lens = random_lens(p.n, p.m, p.seed);
  pool_params vl{0.3};
  vl.mask = mask::valid_length;
  vl.valid_lens = lens;
  auto dout = random_dout(p.n, p.dv, p.seed);
  const grads32 host = run_backward(p, dout, vl, backend::cuda_fused);

  const attnpool::test::device_problem dp(p);
  attnpool::test::device_array ddout(dout), gq(p.n * p.d), gk(p.m * p.d), gv(p.m * p.dv);
  double* dh = nullptr;
  attnpool::test::cuda_ok(cudaMalloc(&dh, sizeof(double)), "cudaMalloc(dh)");
  attnpool::test::device_workspace ws(
      attnpool::cuda::pool_backward_workspace_size(p.n, p.m, p.d, p.dv, vl));
  attnpool::options o;
  o.backend = backend::cuda_fused;
  o.workspace = ws.data();
  o.workspace_bytes = ws.bytes();
  attnpool::pool_gradients g;
  g.queries = {gq.data(), p.n, p.d};
  g.keys = {gk.data(), p.m, p.d};
  g.values = {gv.data(), p.m, p.dv};
  g.bandwidth = dh;
  attnpool::cuda::pool_backward(dp.queries(), dp.keys(), dp.values(), {ddout.data(), p.n, p.dv}, g,
                                vl, o);
  double dh_host = 0.0;
  attnpool::test::cuda_ok(cudaMemcpy(&dh_host, dh, sizeof dh_host, cudaMemcpyDeviceToHost),
                          "download dh");
  const auto q = gq.download(), k = gk.download(), v = gv.download();
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t c = 0; c < p.d; ++c)
      EXPECT_EQ(q[i * p.d + c], host.dq[i * (p.d + kGradPad) + c])
          << "dq(" << i << ", " << c << ")";
  for (std::size_t j = 0; j < p.m; ++j) {
    for (std::size_t c = 0; c < p.d; ++c)
      EXPECT_EQ(k[j * p.d + c], host.dk[j * (p.d + kGradPad) + c])
          << "dk(" << j << ", " << c << ")";
    for (std::size_t c = 0; c < p.dv; ++c)
      EXPECT_EQ(v[j * p.dv + c], host.dv[j * (p.dv + kGradPad) + c])
          << "dv(" << j << ", " << c << ")";
  }
  EXPECT_EQ(dh_host, host.dh);

  // check_finite scans dout too, naming the element.
  dout[5 * p.dv + 1] = std::numeric_limits<float>::infinity();
  ddout.upload(dout);
  try {
    attnpool::cuda::pool_backward(dp.queries(), dp.keys(), dp.values(), {ddout.data(), p.n, p.dv},
                                  g, vl, o);
    ADD_FAILURE() << "no exception for an inf in dout";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dout(5, 1) is inf"), std::string::npos) << e.what();
  }
  // Too small a workspace is refused, naming the sizes.
  o.workspace_bytes = 16;
  try {
    attnpool::cuda::pool_backward(dp.queries(), dp.keys(), dp.values(), {ddout.data(), p.n, p.dv},
                                  g, vl, o);
    ADD_FAILURE() << "no exception for a small workspace";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("workspace_bytes is 16"), std::string::npos) << e.what();
  }
  static_cast<void>(cudaFree(dh));
}

// ---- training ---------------------------------------------------------------------------------

// As test_train.cpp's CpuFollowsTheReferenceStepByStep: each step from the reference's w, the
// loss to 1e-4 relative and the step w' - w to 1e-3 of its length (cancellation in dq + dk).
TEST(CudaTrain, FollowsTheReferenceStepByStep) {
  ATTNPOOL_REQUIRE_DEVICE();
  {
    const std::uint64_t seed = fresh_seed();
    SCOPED_TRACE("seed=" + std::to_string(seed) + " (replay with ATTNPOOL_TEST_SEED)");
    const dataset data = book_data(50, 1, seed);
    attnpool::train_options t = attnpool::train_options::book();
    t.max_epochs = 1;
    t.initial_w = {0.5};
    for (int step = 0; step < 5; ++step) {
      const auto gpu =
          attnpool::train_parametric(data.xv(), data.yv(), t, opts_for(backend::cuda_fused));
      const auto ref =
          attnpool::train_parametric(data.xv(), data.yv(), t, opts_for(backend::reference));
      EXPECT_NEAR(gpu.loss[0], ref.loss[0], 1e-4 * ref.loss[0]) << "step " << step;
      for (std::size_t c = 0; c < ref.w.size(); ++c) {
        const double w0 = t.initial_w[c];
        EXPECT_NEAR(gpu.w[c], ref.w[c], 1e-3 * std::fabs(ref.w[c] - w0) + 1e-7 * std::fabs(w0))
            << "step " << step << " w_" << c << " from " << w0;
      }
      t.initial_w = ref.w;
    }
  }
}

// The book's run (lr 0.5, 5 epochs, random start) on the GPU and on the CPU engine: the same
// trajectory within float tolerance. Five steps on a non-convex loss can amplify a 1e-6
// gradient difference a thousandfold (test_train.cpp saw 2e-3 relative in w between the CPU
// and the reference), so the bar is 1e-2 relative; a wrong gradient is off by tens of percent.
TEST(CudaTrain, TheBooksRunMatchesTheCpu) {
  ATTNPOOL_REQUIRE_DEVICE();
  const std::uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed=" + std::to_string(seed) + " (replay with ATTNPOOL_TEST_SEED)");
  const dataset data = book_data(50, 1, seed);
  attnpool::train_options t = attnpool::train_options::book();
  t.seed = seed;
  const auto gpu =
      attnpool::train_parametric(data.xv(), data.yv(), t, opts_for(backend::cuda_fused));
  const auto cpu = attnpool::train_parametric(data.xv(), data.yv(), t, opts_for(backend::cpu));
  ASSERT_EQ(gpu.loss.size(), 5u);
  for (std::size_t e = 0; e < 5; ++e)
    EXPECT_NEAR(gpu.loss[e], cpu.loss[e], 1e-2 * cpu.loss[e]) << "epoch " << e;
  EXPECT_NEAR(gpu.w[0], cpu.w[0], 1e-2 * std::fabs(cpu.w[0]));
  EXPECT_NEAR(gpu.final_loss, cpu.final_loss, 1e-2 * cpu.final_loss);
  // Deterministic on the GPU too.
  const auto again =
      attnpool::train_parametric(data.xv(), data.yv(), t, opts_for(backend::cuda_fused));
  EXPECT_EQ(gpu.w, again.w);
  EXPECT_EQ(gpu.loss, again.loss);
}

}  // namespace
