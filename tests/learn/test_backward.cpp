// The backward pass: the CPU engine against the fp64 oracle with derived tolerances,
// and the oracle against central finite differences (Richardson-extrapolated) of
// reference::pool, with and without masks, on fresh random data.
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "learn_support.hpp"
#include "test_support.hpp"

namespace {

using attnpool::backend;
using attnpool::mask;
using attnpool::mutable_view;
using attnpool::test::fresh_seed;
using attnpool::test::make_problem;
using attnpool::test::problem;
using attnpool::test::random_dout;
using attnpool::test::random_lens;

using attnpool::test::opts_for;

struct grads32 {
  std::vector<float> dq, dk, dv;
  double dh = std::nan("");
};

grads32 run_backward(const problem& p, const std::vector<float>& dout,
                     const attnpool::pool_params& params, backend b, unsigned threads = 0) {
  grads32 g{std::vector<float>(p.n * p.d), std::vector<float>(p.m * p.d),
            std::vector<float>(p.m * p.dv)};
  attnpool::test::poison(g.dq);
  attnpool::test::poison(g.dk);
  attnpool::test::poison(g.dv);
  attnpool::pool_backward(
      p.queries(), p.keys(), p.values(), {dout.data(), p.n, p.dv},
      {{g.dq.data(), p.n, p.d}, {g.dk.data(), p.m, p.d}, {g.dv.data(), p.m, p.dv}, &g.dh}, params,
      opts_for(b, threads));
  return g;
}

// |got - want| <= rtol * scale + bound, with rtol = 1e-5 (test_support.hpp's bar for float32
// sums) and the oracle's first-order score-error bound; every value finite.
void expect_close(const char* what, const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& scale, const std::vector<double>& bound) {
  std::size_t failures = 0;
  for (std::size_t e = 0; e < got.size(); ++e) {
    const double tol = 1e-5 * scale[e] + bound[e] + 1e-30;
    const double err = std::fabs(static_cast<double>(got[e]) - want[e]);
    if ((!std::isfinite(got[e]) || err > tol) && ++failures <= 5)
      ADD_FAILURE() << what << "[" << e << "] = " << got[e] << ", reference " << want[e]
                    << ", |err| " << err << " > tol " << tol;
  }
  if (failures > 5) ADD_FAILURE() << what << ": " << failures << " elements out of tolerance";
}

void check_against_reference(const problem& p, const attnpool::pool_params& params) {
  SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
               " mask=" + attnpool::to_string(params.mask));
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const grads32 g = run_backward(p, dout, params, backend::cpu);
  const auto ref = attnpool::reference::pool_backward(p.queries(), p.keys(), p.values(),
                                                      {dout.data(), p.n, p.dv}, params);
  expect_close("dq", g.dq, ref.dq, ref.dq_scale, ref.dq_bound);
  expect_close("dk", g.dk, ref.dk, ref.dk_scale, ref.dk_bound);
  expect_close("dv", g.dv, ref.dv, ref.dv_scale, ref.dv_bound);
  // dh sums n * m terms: float tile sums, float across a row's tiles, double across rows.
  EXPECT_NEAR(g.dh, ref.dh, 1e-5 * ref.dh_scale + ref.dh_bound + 1e-30);
}

TEST(Backward, CpuMatchesTheOracle) {
  for (std::size_t n : {1, 7, 129}) {
    for (std::size_t m : {1, 7, 1500}) {
      for (std::size_t d : {1, 3}) {
        for (std::size_t dv : {1, 2}) {
          for (double h : {0.1, 0.5, 3.0}) {
            check_against_reference(make_problem(n, m, d, dv, fresh_seed()), {h});
          }
        }
      }
    }
  }
  // One large row count, so that the columns phase sums over several query tiles.
  check_against_reference(make_problem(2500, 300, 2, 1, fresh_seed()), {0.3});
}

TEST(Backward, CpuMatchesTheOracleWithMasks) {
  for (std::size_t n : {2, 7, 1025}) {
    for (std::size_t d : {1, 3}) {
      for (std::size_t dv : {1, 2}) {
        const problem p = make_problem(n, n, d, dv, fresh_seed());
        attnpool::pool_params loo{0.3};
        loo.mask = mask::leave_one_out;
        check_against_reference(p, loo);
        const auto lens = random_lens(p.n, p.m, p.seed);
        attnpool::pool_params vl{0.3};
        vl.mask = mask::valid_length;
        vl.valid_lens = lens;
        check_against_reference(p, vl);
      }
    }
  }
}

// d = dv = 1 has its own loops in both phases (phase 2 walks a query tile for 4 keys at once, so
// key counts that are not multiples of 4 and several query tiles matter), on every mask, with
// bandwidths from far below to far above the data's spacing, and with keys far from every query
// (huge reference distances; weights in the range that the denormal flush touches).
TEST(Backward, CpuD1MatchesTheOracle) {
  for (std::size_t n : {1, 7, 129, 4097}) {
    for (std::size_t m : {1, 7, 129, 4097}) {
      if (n == 4097 && m == 4097) continue;  // the square case runs below, with masks
      for (double h : {1e-3, 0.05, 0.5, 1e3}) {
        check_against_reference(make_problem(n, m, 1, 1, fresh_seed()), {h});
      }
      check_against_reference(make_problem(n, m, 1, 1, fresh_seed(), 1e3f), {0.5});
      check_against_reference(make_problem(n, m, 1, 1, fresh_seed(), 30.0f), {1e-2});
    }
  }
  for (std::size_t n : {2, 7, 129, 4097}) {
    for (double h : {1e-3, 0.05, 1e3}) {
      const problem p = make_problem(n, n, 1, 1, fresh_seed());
      attnpool::pool_params loo{h};
      loo.mask = mask::leave_one_out;
      check_against_reference(p, loo);
      const auto lens = random_lens(p.n, p.m, p.seed);
      attnpool::pool_params vl{h};
      vl.mask = mask::valid_length;
      vl.valid_lens = lens;
      check_against_reference(p, vl);
    }
  }
}

// L(q, k, v, h) = sum_ic dout_ic out_ic in fp64 from reference::pool.
double loss(const problem& p, const std::vector<float>& dout, const attnpool::pool_params& params) {
  const auto r = attnpool::reference::pool(p.queries(), p.keys(), p.values(), params);
  double l = 0.0;
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t c = 0; c < p.dv; ++c) l += double{dout[i * p.dv + c]} * r.out[i * p.dv + c];
  return l;
}

// Central differences with steps delta and delta / 2, Richardson-extrapolated: error O(delta^4).
// The inputs are multiples of 2^-8 below 4, so x +- 2^-10 and x +- 2^-11 are exact floats.
double derivative(const std::function<double(double)>& f, double delta) {
  const double c1 = (f(delta) - f(-delta)) / (2.0 * delta);
  const double c2 = (f(delta / 2) - f(-delta / 2)) / delta;
  return (4.0 * c2 - c1) / 3.0;
}

void check_finite_differences(problem p, const attnpool::pool_params& params) {
  SCOPED_TRACE(attnpool::test::describe(p, params.bandwidth) +
               " mask=" + attnpool::to_string(params.mask));
  // Values too: a perturbed coordinate x0 + step must be exact in float, or the step taken is
  // not the step divided by (about ulp(x0) / delta relative error: 3.6e-6 in dv for seed
  // 4774196708904890910 before the values were rounded).
  for (auto* a : {&p.q, &p.k, &p.v})
    for (float& x : *a)
      if (std::isfinite(x)) x = std::round(x * 256.0f) / 256.0f;
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const auto g = attnpool::reference::pool_backward(p.queries(), p.keys(), p.values(),
                                                    {dout.data(), p.n, p.dv}, params);
  const double delta = 1.0 / 1024.0;
  // Truncation O(delta^4 L^(5)) and cancellation O(1e-16 / delta) are both < 1e-9 here; the
  // bar is 1e-7 of the element's scale.
  auto check = [&](const char* what, std::vector<float>& data, std::size_t rows, std::size_t cols,
                   std::size_t ld, const std::vector<double>& grad,
                   const std::vector<double>& scale) {
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t c = 0; c < cols; ++c) {
        float& x = data[i * ld + c];
        const float x0 = x;
        const double fd = derivative(
            [&](double step) {
              x = static_cast<float>(x0 + step);
              const double l = loss(p, dout, params);
              x = x0;
              return l;
            },
            delta);
        EXPECT_NEAR(grad[i * cols + c], fd, 1e-7 * (scale[i * cols + c] + 1.0))
            << what << "(" << i << ", " << c << ")";
      }
  };
  check("dq", p.q, p.n, p.d, p.d + p.pad, g.dq, g.dq_scale);
  check("dk", p.k, p.m, p.d, p.d + p.pad, g.dk, g.dk_scale);
  check("dv", p.v, p.m, p.dv, p.dv + p.pad, g.dv, g.dv_scale);
  attnpool::pool_params ph = params;
  const double h0 = params.bandwidth;
  const double fd_h = derivative(
      [&](double step) {
        ph.bandwidth = h0 + step;
        return loss(p, dout, ph);
      },
      h0 * 1e-3);
  EXPECT_NEAR(g.dh, fd_h, 1e-7 * (g.dh_scale + 1.0)) << "dh";
}

TEST(Backward, OracleMatchesFiniteDifferences) {
  for (double h : {0.2, 0.7}) {
    for (std::size_t d : {1, 2}) {
      check_finite_differences(make_problem(5, 8, d, 2, fresh_seed()), {h});
      const problem sq = make_problem(6, 6, d, 1, fresh_seed());
      attnpool::pool_params loo{h};
      loo.mask = mask::leave_one_out;
      check_finite_differences(sq, loo);
      const auto lens = random_lens(sq.n, sq.m, sq.seed);
      attnpool::pool_params vl{h};
      vl.mask = mask::valid_length;
      vl.valid_lens = lens;
      check_finite_differences(sq, vl);
    }
  }
}

// The gradients on one thread, after checking that 2, 3 and all threads give the same bits.
grads32 expect_independent_of_threads(const problem& p, const std::vector<float>& dout,
                                      double h) {
  SCOPED_TRACE(attnpool::test::describe(p, h));
  grads32 one = run_backward(p, dout, {h}, backend::cpu, 1);
  for (unsigned t : {2u, 3u, 0u}) {
    const grads32 g = run_backward(p, dout, {h}, backend::cpu, t);
    EXPECT_EQ(one.dq, g.dq) << "threads=" << t;
    EXPECT_EQ(one.dk, g.dk) << "threads=" << t;
    EXPECT_EQ(one.dv, g.dv) << "threads=" << t;
    EXPECT_EQ(one.dh, g.dh) << "threads=" << t;
  }
  return one;
}

TEST(Backward, CpuIsIndependentOfThreadCountAndOfWhichGradientsAreAsked) {
  const problem p = make_problem(300, 2100, 2, 2, fresh_seed());
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const grads32 one = expect_independent_of_threads(p, dout, 0.2);
  double dh = 0.0;
  attnpool::pool_gradients only_h;
  only_h.bandwidth = &dh;
  attnpool::pool_backward(p.queries(), p.keys(), p.values(), {dout.data(), p.n, p.dv}, only_h,
                          {0.2}, opts_for(backend::cpu));
  EXPECT_EQ(dh, one.dh);
}

// The d = 1 loops: key groups and query tiles are fixed by the data, never by the threads.
TEST(Backward, CpuD1IsIndependentOfThreadCount) {
  const problem p = make_problem(4097, 1031, 1, 1, fresh_seed());
  expect_independent_of_threads(p, random_dout(p.n, p.dv, p.seed), 0.05);
}

#if defined(__SSE__)
// The backward flushes denormals on its threads while its loops run; the caller's floating-point
// control register is as it was after the call, whatever it was before.
TEST(Backward, CpuLeavesTheCallersFloatingPointModeAlone) {
  const problem p = make_problem(300, 300, 1, 1, fresh_seed(), 3.0f);
  const auto dout = random_dout(p.n, p.dv, p.seed);
  const unsigned saved = _mm_getcsr();
  for (unsigned mode : {saved & ~0x8040u, saved | 0x8040u}) {
    _mm_setcsr(mode);
    run_backward(p, dout, {0.05}, backend::cpu, 1);
    EXPECT_EQ(_mm_getcsr(), mode);
  }
  _mm_setcsr(saved);
}
#endif

TEST(Backward, RejectsBadGradientViewsAndTheGpu) {
  const problem p = make_problem(3, 4, 2, 1, 7);
  const std::vector<float> dout(3, 1.0f);
  std::vector<float> buf(64);
  auto expect_invalid = [&](const attnpool::pool_gradients& g, backend b, const std::string& part) {
    try {
      attnpool::pool_backward(p.queries(), p.keys(), p.values(), {dout.data(), 3, 1}, g, {1.0},
                              opts_for(b));
      ADD_FAILURE() << "no exception for " << part;
    } catch (const attnpool::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  attnpool::pool_gradients g;
  g.queries = mutable_view{buf.data(), 4, 2};
  expect_invalid(g, backend::cpu, "grads.queries must be 3 x 2");
  g = {};
  g.values = mutable_view{buf.data(), 4, 2};
  expect_invalid(g, backend::reference, "grads.values must be 4 x 1");
  expect_invalid({}, backend::cuda_unfused,
                 "backend cuda_unfused is not implemented for the learning API");
}

// cuda_fused runs the GPU backward (tests/cuda/test_cuda_learn.cpp checks its numbers): here,
// without a device it fails loudly with cuda_error (never a silent CPU fallback), and d above
// the GPU limit is refused before any CUDA call, with or without a device.
TEST(Backward, CudaFusedRunsOnTheGpuOrSaysWhyNot) {
  const problem wide = make_problem(2, 3, attnpool::kMaxGpuBackwardDims + 1, 1, 7);
  const std::vector<float> dout(2, 1.0f);
  std::vector<float> dq(wide.n * wide.d);
  attnpool::pool_gradients g;
  g.queries = mutable_view{dq.data(), wide.n, wide.d};
  try {
    attnpool::pool_backward(wide.queries(), wide.keys(), wide.values(), {dout.data(), 2, 1}, g,
                            {1.0}, opts_for(backend::cuda_fused));
    ADD_FAILURE() << "no exception for d = 65";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("d = 65 exceeds the GPU backward pass's limit of 64"),
              std::string::npos)
        << e.what();
  }
  // automatic never picks the GPU for d above its limit: it runs the CPU engine, bitwise.
  std::vector<float> dq_auto(wide.n * wide.d), dq_cpu(wide.n * wide.d);
  g.queries = mutable_view{dq_auto.data(), wide.n, wide.d};
  attnpool::pool_backward(wide.queries(), wide.keys(), wide.values(), {dout.data(), 2, 1}, g, {1.0},
                          opts_for(backend::automatic));
  g.queries = mutable_view{dq_cpu.data(), wide.n, wide.d};
  attnpool::pool_backward(wide.queries(), wide.keys(), wide.values(), {dout.data(), 2, 1}, g, {1.0},
                          opts_for(backend::cpu));
  EXPECT_EQ(dq_auto, dq_cpu);
  const problem p = make_problem(3, 4, 2, 1, 7);
  std::vector<float> dq2(p.n * p.d);
  g.queries = mutable_view{dq2.data(), p.n, p.d};
  auto run = [&] {
    attnpool::pool_backward(p.queries(), p.keys(), p.values(), {dout.data(), 2, 1}, g, {1.0},
                            opts_for(backend::cuda_fused));
  };
  const std::vector<float> dout3(3, 1.0f);
  auto run3 = [&] {
    attnpool::pool_backward(p.queries(), p.keys(), p.values(), {dout3.data(), 3, 1}, g, {1.0},
                            opts_for(backend::cuda_fused));
  };
  EXPECT_THROW(run(), attnpool::invalid_argument);  // dout is 2 x 1, not 3 x 1
  if (attnpool::cuda_available()) {
    EXPECT_NO_THROW(run3());
  } else {
    EXPECT_THROW(run3(), attnpool::cuda_error);
  }
}

}  // namespace
