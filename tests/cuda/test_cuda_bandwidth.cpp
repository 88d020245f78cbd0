// Bandwidth selection on the GPU: loo_cv_error and select_bandwidth on cuda_fused
// against the CPU engine and the fp64 oracle, the sweep kernel's coverage of its output
// (NaN-poisoned), determinism, and degenerate data. The host-side parts (batch planning,
// dispatch buckets, argument errors) run without a device; every GPU case starts with
// ATTNPOOL_REQUIRE_DEVICE() and skips visibly without one.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>

#include "kernels/loo_sweep/params.hpp"
#include "cuda_test_support.hpp"
#include "learn_support.hpp"

namespace {

using attnpool::backend;
using attnpool::test::degenerate_bandwidth_cases;
using attnpool::test::degenerate_case;
using attnpool::test::describe;
using attnpool::test::fresh_seed;
using attnpool::test::loo_cv_tolerance;
using attnpool::test::make_problem;
using attnpool::test::opts_for;
using attnpool::test::problem;

// Bandwidths from far below the data's spacing to far above its range (inputs in [0, 1)^d),
// 9 of them: one full group of 8 plus a group with a single active lane.
const std::vector<double> kWideHs = {1e-3, 1e-2, 0.05, 0.1, 0.3, 1.0, 3.0, 100.0, 1e4};

// The notebook's data: x uniform on [0, 5), y = 2 sin x + x^0.8 + N(0, 0.5^2).
problem notebook_problem(std::size_t n, std::uint64_t seed) {
  problem p = make_problem(n, n, 1, 1, seed);  // shapes and NaN pads; values replaced below
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 5.0f);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  for (std::size_t i = 0; i < n; ++i) {
    const float x = u(rng);
    p.q[i * (1 + p.pad)] = x;
    p.v[i * (1 + p.pad)] = 2.0f * std::sin(x) + std::pow(x, 0.8f) + noise(rng);
  }
  return p;
}

// GPU and CPU loo_cv_error against the fp64 oracle, each within the derived tolerance, and
// finite everywhere.
void check_loo(const problem& p, const std::vector<double>& hs) {
  SCOPED_TRACE(describe(p, 0.0));
  const auto gpu =
      attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cuda_fused));
  const auto cpu = attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cpu));
  const auto ref =
      attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::reference));
  ASSERT_EQ(gpu.size(), hs.size());
  for (std::size_t b = 0; b < hs.size(); ++b) {
    const double tol = loo_cv_tolerance(p, hs[b]);
    ASSERT_TRUE(std::isfinite(gpu[b])) << "h=" << hs[b];
    EXPECT_NEAR(gpu[b], ref[b], tol) << "h=" << hs[b] << " (gpu vs fp64)";
    // Both float32 sweeps are within tol of the oracle, so within 2 tol of each other.
    EXPECT_NEAR(gpu[b], cpu[b], 2.0 * tol) << "h=" << hs[b] << " (gpu vs cpu)";
  }
}

// ---- host-side: no device needed -------------------------------------------------------------

TEST(CudaBandwidthPlan, BatchesWholeGroupsWithinTheBudget) {
  using attnpool::kernels::kLooGroup;
  using attnpool::kernels::loo_batch_bandwidths;
  const auto g = static_cast<std::size_t>(kLooGroup);
  EXPECT_EQ(g, 8u);
  // Everything fits: one launch for all bandwidths.
  EXPECT_EQ(loo_batch_bandwidths(1000, 64, std::size_t{256} << 20), 64u);
  EXPECT_EQ(loo_batch_bandwidths(2, 1, 1024), 1u);
  // n = 1e6, 64 bandwidths, 256 MiB: 33 bandwidths of 8 MB fit, rounded down to 32.
  EXPECT_EQ(loo_batch_bandwidths(1000000, 64, std::size_t{256} << 20), 32u);
  // Never less than one group, even where one group exceeds the budget.
  EXPECT_EQ(loo_batch_bandwidths(std::size_t{1} << 30, 64, 1024), g);
  // Never more than grid.y (65535 groups) allows.
  EXPECT_EQ(loo_batch_bandwidths(2, std::size_t{1} << 30, std::size_t{1} << 40), 65535u * g);
}

TEST(CudaBandwidthPlan, DimensionBuckets) {
  using attnpool::kernels::loo_d_bucket;
  using attnpool::kernels::loo_dv_bucket;
  EXPECT_EQ(loo_d_bucket(1), 1);
  EXPECT_EQ(loo_d_bucket(2), 2);
  EXPECT_EQ(loo_d_bucket(3), 4);
  EXPECT_EQ(loo_d_bucket(4), 4);
  EXPECT_EQ(loo_d_bucket(5), 8);
  EXPECT_EQ(loo_d_bucket(8), 8);
  EXPECT_EQ(loo_d_bucket(9), 0);
  EXPECT_EQ(loo_d_bucket(1000), 0);
  EXPECT_EQ(loo_dv_bucket(1), 1);
  EXPECT_EQ(loo_dv_bucket(2), 4);
  EXPECT_EQ(loo_dv_bucket(17), 4);
}

// The per-row arithmetic of the sweep kernel (kernels::loo_row_sweep: running nearest distance,
// rescale, masked weights, errors) on the CPU, driven as loo_sweep_kernel drives it: keys in
// chunks of 16 in index order, the row's own key and the padding past n masked, value columns
// in windows of 4. Every leave-one-out prediction must match the fp64 oracle's within the
// forward engine's derived tolerance, and the errors its cv.
TEST(CudaBandwidthRowSweep, MatchesTheOracleOnTheHost) {
  using attnpool::kernels::loo_row_sweep;
  constexpr int kG = attnpool::kernels::kLooGroup, kDvc = 4;
  constexpr int kChunk = attnpool::kernels::loo_sweep_traits<1, 4>::kChunk;
  const std::vector<double> hs = {1e-3, 1e-2, 0.1, 1.0, 100.0, 1e6};
  static_assert(kG >= 6);
  auto run = [&](const problem& p) {
    SCOPED_TRACE(describe(p, 0.0));
    float neg_c[kG];
    for (int g = 0; g < kG; ++g)
      neg_c[g] = static_cast<float>(-attnpool::detail::gaussian_log2_scale(
          hs[std::min<std::size_t>(static_cast<std::size_t>(g), hs.size() - 1)]));
    const int active = static_cast<int>(hs.size());
    // yhat[b] is n x dv; err[b] the summed squared errors.
    std::vector<std::vector<float>> yhat(hs.size(), std::vector<float>(p.n * p.dv));
    std::vector<double> err_sum(hs.size(), 0.0);
    for (std::size_t i = 0; i < p.n; ++i) {
      double err[kG] = {};
      for (std::size_t c0 = 0; c0 < p.dv; c0 += kDvc) {
        const int cols = static_cast<int>(std::min<std::size_t>(kDvc, p.dv - c0));
        loo_row_sweep<kG, kDvc> row;
        for (std::size_t j0 = 0; j0 < p.n; j0 += kChunk) {
          float r[kChunk], vals[kChunk * kDvc] = {};
          unsigned valid = 0;
          for (int k = 0; k < kChunk; ++k) {
            const std::size_t j = j0 + static_cast<std::size_t>(k);
            r[k] = 0.0f;
            if (j >= p.n) continue;  // padding: masked
            float dist = 0.0f;
            for (std::size_t c = 0; c < p.d; ++c) {
              const float diff = p.queries()(i, c) - p.queries()(j, c);
              dist = diff * diff + dist;
            }
            r[k] = dist;
            for (int c = 0; c < cols; ++c)
              vals[k * kDvc + c] = p.values()(j, c0 + static_cast<std::size_t>(c));
            if (j != i) valid |= 1u << k;
          }
          row.add_chunk(r, valid, neg_c, active, vals);
        }
        float y_row[kDvc] = {};
        for (int c = 0; c < cols; ++c) y_row[c] = p.values()(i, c0 + static_cast<std::size_t>(c));
        row.add_errors(y_row, cols, active, err);
        for (std::size_t b = 0; b < hs.size(); ++b)
          for (int c = 0; c < cols; ++c)
            yhat[b][i * p.dv + c0 + static_cast<std::size_t>(c)] = row.acc[b][c] / row.sum[b];
      }
      for (std::size_t b = 0; b < hs.size(); ++b) err_sum[b] += err[b];
    }
    for (std::size_t b = 0; b < hs.size(); ++b) {
      attnpool::pool_params params{hs[b]};
      params.mask = attnpool::mask::leave_one_out;
      const auto ref = attnpool::reference::pool(p.queries(), p.queries(), p.values(), params);
      attnpool::test::expect_matches_reference(p, params, yhat[b].data(), p.dv, ref);
      double cv64 = 0.0;
      for (std::size_t i = 0; i < p.n; ++i)
        for (std::size_t c = 0; c < p.dv; ++c) {
          const double e = double{p.values()(i, c)} - ref.out[i * p.dv + c];
          cv64 += e * e;
        }
      const double count = static_cast<double>(p.n * p.dv);
      EXPECT_NEAR(err_sum[b] / count, cv64 / count, loo_cv_tolerance(p, hs[b])) << "h=" << hs[b];
    }
  };
  for (std::size_t n : {2, 7, 129}) {
    for (std::size_t d : {1, 3}) {
      for (std::size_t dv : {1, 6}) run(make_problem(n, n, d, dv, fresh_seed()));
    }
  }
  // Rows 1e4 away from the others (a cluster of their own): 2^-huge weights across clusters.
  problem far = make_problem(200, 200, 2, 1, fresh_seed());
  for (std::size_t i = 0; i < far.n; i += 23)
    for (std::size_t c = 0; c < far.d; ++c) far.q[i * (far.d + far.pad) + c] += 1e4f;
  run(far);
  // Rows 7 and 8 1e17 and 1.5e17 away from the rest, each the other's nearest key (5e16 apart):
  // at h = 1e-3 that key's score (-2.5e33 * 7.2e5 in log2 units) is -inf in float32, yet in
  // distance differences it keeps weight exactly 1 and every other key gets 0: row 7's
  // prediction must be row 8's value exactly. (Not through run(): the oracle's float32 error
  // bound is not finite for such scores.)
  problem lone = make_problem(50, 50, 2, 1, fresh_seed());
  lone.q[7 * (lone.d + lone.pad)] += 1e17f;
  lone.q[8 * (lone.d + lone.pad)] += 1.5e17f;
  std::size_t nearest = 0;
  double best = INFINITY;
  for (std::size_t j = 0; j < lone.n; ++j) {
    if (j == 7) continue;
    double r = 0.0;
    for (std::size_t c = 0; c < lone.d; ++c) {
      const double diff = double{lone.queries()(7, c)} - double{lone.queries()(j, c)};
      r += diff * diff;
    }
    if (r < best) best = r, nearest = j;
  }
  loo_row_sweep<kG, 1> row;
  float neg_c[kG];
  for (float& c : neg_c) c = static_cast<float>(-attnpool::detail::gaussian_log2_scale(1e-3));
  for (std::size_t j0 = 0; j0 < lone.n; j0 += kChunk) {
    float r[kChunk] = {}, vals[kChunk] = {};
    unsigned valid = 0;
    for (int k = 0; k < kChunk && j0 + static_cast<std::size_t>(k) < lone.n; ++k) {
      const std::size_t j = j0 + static_cast<std::size_t>(k);
      r[k] = attnpool::detail::squared_distance(&lone.q[7 * (lone.d + lone.pad)],
                                                &lone.q[j * (lone.d + lone.pad)], 2);
      vals[k] = lone.values()(j, 0);
      if (j != 7) valid |= 1u << k;
    }
    row.add_chunk(r, valid, neg_c, 1, vals);
  }
  ASSERT_EQ(nearest, 8u);
  EXPECT_EQ(row.sum[0], 1.0f);
  EXPECT_EQ(row.acc[0][0], lone.values()(nearest, 0)) << "nearest key " << nearest;
}

// Argument errors come from the shared host checks before any device work: the same words as
// the CPU's, with or without a GPU.
TEST(CudaBandwidthArgs, RejectedOnTheHostWithTheCpuWords) {
  const problem p = make_problem(5, 5, 2, 1, 7);
  auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const attnpool::invalid_argument& e) {
      return e.what();
    }
    return "(no invalid_argument)";
  };
  const std::vector<double> good = {1.0};
  for (const std::vector<double>& hs : {std::vector<double>{-1.0}, std::vector<double>{}}) {
    const std::string gpu = message([&] {
      (void)attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cuda_fused));
    });
    const std::string cpu = message(
        [&] { (void)attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cpu)); });
    EXPECT_EQ(gpu, cpu);
    EXPECT_NE(gpu.find("loo_cv_error: "), std::string::npos) << gpu;
  }
  // n = 1: leave-one-out has no key; both refuse it the same way.
  const problem one = make_problem(1, 1, 1, 1, 7);
  const std::string gpu1 = message([&] {
    (void)attnpool::loo_cv_error(one.queries(), one.values(), good, opts_for(backend::cuda_fused));
  });
  EXPECT_NE(gpu1.find("x.rows (n) must be >= 2"), std::string::npos) << gpu1;
  EXPECT_EQ(gpu1, message([&] {
              (void)attnpool::loo_cv_error(one.queries(), one.values(), good,
                                           opts_for(backend::cpu));
            }));
  // A NaN input is named with its position (check_finite runs on the host data).
  problem bad = make_problem(5, 5, 2, 1, 7);
  bad.q[3 * (2 + bad.pad) + 1] = std::numeric_limits<float>::quiet_NaN();
  const std::string nan_msg = message([&] {
    (void)attnpool::select_bandwidth(bad.queries(), bad.values(), {},
                                     opts_for(backend::cuda_fused));
  });
  EXPECT_NE(nan_msg.find("x(3, 1)"), std::string::npos) << nan_msg;
  // cuda_unfused has no sweep: named, not silently replaced.
  const std::string unfused = message([&] {
    (void)attnpool::loo_cv_error(p.queries(), p.values(), good, opts_for(backend::cuda_unfused));
  });
  EXPECT_NE(unfused.find("backend cuda_unfused has no leave-one-out sweep"), std::string::npos)
      << unfused;
}

TEST(CudaBandwidthArgs, NoDeviceIsACudaError) {
  if (attnpool::cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  const problem p = make_problem(5, 5, 1, 1, 7);
  const std::vector<double> hs = {1.0};
  EXPECT_THROW(
      (void)attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cuda_fused)),
      attnpool::cuda_error);
  // automatic picks the CPU where no device exists.
  EXPECT_EQ(attnpool::loo_cv_error(p.queries(), p.values(), hs),
            attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cpu)));
}

// ---- on the GPU ----------------------------------------------------------------------------

TEST(CudaLooCv, MatchesCpuAndReferenceAcrossShapes) {
  ATTNPOOL_REQUIRE_DEVICE();
  // d: each compiled bucket (1, 2, 4, 8), zero-padded ones (3, 5) and the generic path (13);
  // dv: the 1-column kernel, the 4-column window (3) and two windows (6).
  for (std::size_t n : {2, 7, 129}) {
    for (std::size_t d : {1, 2, 3, 5, 8, 13}) {
      for (std::size_t dv : {1, 3, 6}) check_loo(make_problem(n, n, d, dv, fresh_seed()), kWideHs);
    }
  }
}

TEST(CudaLooCv, MatchesCpuAndReferenceAt4097) {
  ATTNPOOL_REQUIRE_DEVICE();
  // Not a multiple of the 128-row block nor of the 16-key chunk. Few bandwidths: the fp64
  // oracle and its tolerance cost about 1 s per bandwidth at n = 4097 on the host.
  check_loo(make_problem(4097, 4097, 1, 1, fresh_seed()), {1e-3, 0.1, 3.0});
  check_loo(make_problem(1031, 1031, 3, 2, fresh_seed()), {1e-3, 0.1, 1.0, 100.0});
  check_loo(make_problem(1000, 1000, 20, 5, fresh_seed()), {0.05, 0.3, 1.0, 3.0});
}

TEST(CudaLooCv, FarAwayRowsAndExtremeBandwidths) {
  ATTNPOOL_REQUIRE_DEVICE();
  // Rows 1e4 away from the rest (a cluster of their own): scores down to -1e14 in log2 units
  // against the others, 2^-huge weights, and the derived tolerance still meaningful.
  problem p = make_problem(300, 300, 2, 1, fresh_seed());
  for (std::size_t i = 0; i < p.n; i += 37)
    for (std::size_t c = 0; c < p.d; ++c) p.q[i * (p.d + p.pad) + c] += 1e4f;
  check_loo(p, {1e-3, 1e-2, 1.0, 1e3, 1e6});
}

TEST(CudaLooCv, IsolatedRowBeyondFloat32Scores) {
  ATTNPOOL_REQUIRE_DEVICE();
  // Two rows 1e17 and 1.5e17 away from the rest (allowed: squared distances stay finite
  // floats), each the other's nearest key, 5e16 away: with h = 1e-3 that key's score,
  // -2.5e33 * 7.2e5 in log2 units, is -inf in float32, so a softmax that kept the maximum score
  // would lose both rows (0/0). The sweep works in distance differences, as the CPU does: each is
  // predicted by the other, exactly. The fp64 oracle's tolerance is infinite for those rows, so
  // this compares at 1e-4 relative: float32 rounding of the other rows moves cv by ~1e-7, one row
  // predicted wrongly moves it by ~1e-2.
  problem p = make_problem(300, 300, 2, 1, fresh_seed());
  p.q[7 * (p.d + p.pad)] += 1e17f;
  p.q[8 * (p.d + p.pad)] += 1.5e17f;
  SCOPED_TRACE(describe(p, 0.0));
  const std::vector<double> hs = {1e-3, 1e-2, 1.0, 100.0};
  const auto gpu =
      attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cuda_fused));
  const auto cpu = attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cpu));
  const auto ref =
      attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::reference));
  for (std::size_t b = 0; b < hs.size(); ++b) {
    ASSERT_TRUE(std::isfinite(gpu[b])) << "h=" << hs[b];
    EXPECT_NEAR(gpu[b], cpu[b], 1e-4 * cpu[b]) << "h=" << hs[b];
    EXPECT_NEAR(gpu[b], ref[b], 1e-4 * ref[b]) << "h=" << hs[b];
  }
}

TEST(CudaLooCv, SweepWritesEveryRowError) {
  ATTNPOOL_REQUIRE_DEVICE();
  // The kernels directly, on a NaN-poisoned row_error: every (bandwidth, row) is written and
  // finite, for a row count that leaves the last block partly empty and 9 bandwidths (a group
  // with one active lane), and the reduction matches the host sum of the rows.
  using attnpool::test::cuda_ok;
  using attnpool::test::device_array;
  for (std::size_t d : {1, 13}) {
    const problem p = make_problem(131, 131, d, 6, fresh_seed(), 0.0f, 0);  // dense rows
    SCOPED_TRACE(describe(p, 0.0));
    const std::size_t nb = kWideHs.size();
    std::vector<float> neg(nb);
    for (std::size_t b = 0; b < nb; ++b)
      neg[b] = static_cast<float>(-attnpool::detail::gaussian_log2_scale(kWideHs[b]));
    device_array x(p.q), y(p.v), dneg(neg);
    std::vector<double> host_err(nb * p.n, std::numeric_limits<double>::quiet_NaN());
    double* rows = nullptr;
    double* cv = nullptr;
    cuda_ok(cudaMalloc(&rows, host_err.size() * sizeof(double)), "cudaMalloc");
    cuda_ok(cudaMalloc(&cv, nb * sizeof(double)), "cudaMalloc");
    cuda_ok(
        cudaMemcpy(rows, host_err.data(), host_err.size() * sizeof(double), cudaMemcpyHostToDevice),
        "poison");
    attnpool::kernels::launch_loo_sweep(
        attnpool::kernels::loo_sweep_args_of(attnpool::const_view{x.data(), p.n, p.d},
                                             attnpool::const_view{y.data(), p.n, p.dv},
                                             dneg.data(), static_cast<int>(nb), rows),
        nullptr);
    const double count = static_cast<double>(p.n * p.dv);
    attnpool::kernels::launch_loo_reduce(rows, p.n, static_cast<int>(nb), count, cv, nullptr);
    std::vector<double> got_cv(nb);
    cuda_ok(
        cudaMemcpy(host_err.data(), rows, host_err.size() * sizeof(double), cudaMemcpyDeviceToHost),
        "download");
    cuda_ok(cudaMemcpy(got_cv.data(), cv, nb * sizeof(double), cudaMemcpyDeviceToHost), "download");
    static_cast<void>(cudaFree(rows));
    static_cast<void>(cudaFree(cv));
    std::size_t bad = 0;
    for (double e : host_err) bad += std::isfinite(e) && e >= 0.0 ? 0 : 1;
    EXPECT_EQ(bad, 0u) << "row errors not written or not finite";
    for (std::size_t b = 0; b < nb; ++b) {
      double s = 0.0;
      for (std::size_t i = 0; i < p.n; ++i) s += host_err[b * p.n + i];
      EXPECT_NEAR(got_cv[b], s / count, 1e-12 * (s / count)) << "h=" << kWideHs[b];
    }
  }
}

TEST(CudaLooCv, BitwiseDeterministicAndAutomaticIsTheGpu) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(4097, 4097, 3, 2, fresh_seed());
  SCOPED_TRACE(describe(p, 0.0));
  std::vector<double> hs(64);
  for (std::size_t k = 0; k < hs.size(); ++k)
    hs[k] = 1e-3 * std::pow(1e4, static_cast<double>(k) / 63.0);
  const auto first =
      attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cuda_fused));
  for (int rep = 0; rep < 2; ++rep)
    EXPECT_EQ(first,
              attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::cuda_fused)));
  // automatic runs the GPU sweep where a device exists: bitwise the same numbers.
  EXPECT_EQ(first, attnpool::loo_cv_error(p.queries(), p.values(), hs));
  // One bandwidth at a time (what the refinement does) gives the same numbers as the batch.
  for (std::size_t k : {0, 31, 63}) {
    const auto one = attnpool::loo_cv_error(p.queries(), p.values(), std::span(&hs[k], 1),
                                            opts_for(backend::cuda_fused));
    EXPECT_EQ(one[0], first[k]) << "h=" << hs[k];
  }
}

TEST(CudaSelectBandwidth, AgreesWithTheCpuAndABruteForceFp64Grid) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (std::size_t n : {200, 1000}) {
    const problem p = notebook_problem(n, fresh_seed());
    SCOPED_TRACE(describe(p, 0.0));
    const auto gpu =
        attnpool::select_bandwidth(p.queries(), p.values(), {}, opts_for(backend::cuda_fused));
    const auto cpu =
        attnpool::select_bandwidth(p.queries(), p.values(), {}, opts_for(backend::cpu));
    ASSERT_TRUE(std::isfinite(gpu.bandwidth));
    ASSERT_GT(gpu.bandwidth, 0.0);
    EXPECT_EQ(gpu.grid, cpu.grid);  // the same search ...
    EXPECT_EQ(gpu.cv.size(), 64u);
    EXPECT_GT(gpu.evaluations, 64u);
    EXPECT_FALSE(gpu.at_boundary);
    for (std::size_t k = 0; k < gpu.cv.size(); ++k)
      EXPECT_NEAR(gpu.cv[k], cpu.cv[k], 2.0 * loo_cv_tolerance(p, gpu.grid[k])) << "k=" << k;
    // ... lands where the CPU's does, within the refinement's tolerance (plus float noise on a
    // flat minimum: a fine-grid step below).
    const std::size_t fine = 8 * 63 + 1;
    std::vector<double> hs(fine);
    for (std::size_t k = 0; k < fine; ++k)
      hs[k] = gpu.grid.front() * std::pow(gpu.grid.back() / gpu.grid.front(),
                                          static_cast<double>(k) / static_cast<double>(fine - 1));
    const double fine_step = std::log(hs[1] / hs[0]);
    EXPECT_LE(std::fabs(std::log(gpu.bandwidth / cpu.bandwidth)), fine_step)
        << "gpu h=" << gpu.bandwidth << " cpu h=" << cpu.bandwidth;
    // Brute force in fp64 on a grid 8x finer (n = 200 only: 505 fp64 sweeps at n = 1000 would
    // take seconds): the GPU's h is as good as its optimum up to the float32 evaluation error,
    // and lies within one fine step of it.
    if (n <= 200) {
      const auto cv64 =
          attnpool::loo_cv_error(p.queries(), p.values(), hs, opts_for(backend::reference));
      std::size_t best = 0;
      for (std::size_t k = 1; k < fine; ++k)
        if (cv64[k] < cv64[best]) best = k;
      EXPECT_LE(std::fabs(std::log(gpu.bandwidth / hs[best])), fine_step + 1e-3)
          << "h=" << gpu.bandwidth << " brute force h=" << hs[best];
      const double at_sel = attnpool::loo_cv_error(p.queries(), p.values(),
                                                   std::span<const double>(&gpu.bandwidth, 1),
                                                   opts_for(backend::reference))[0];
      EXPECT_LE(at_sel, cv64[best] * (1.0 + 1e-5))
          << "h=" << gpu.bandwidth << " brute force h=" << hs[best];
      EXPECT_NEAR(gpu.cv_error, at_sel, 1e-5 * at_sel);
    }
    // Deterministic end to end.
    const auto again =
        attnpool::select_bandwidth(p.queries(), p.values(), {}, opts_for(backend::cuda_fused));
    EXPECT_EQ(again.bandwidth, gpu.bandwidth);
    EXPECT_EQ(again.cv, gpu.cv);
    EXPECT_EQ(again.evaluations, gpu.evaluations);
  }
}

TEST(CudaSelectBandwidth, NeverReturnsANonPositiveBandwidth) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (const degenerate_case& c : degenerate_bandwidth_cases()) {
    SCOPED_TRACE(c.name);
    const attnpool::const_view xv{c.x.data(), c.x.size(), 1}, yv{c.y.data(), c.y.size(), 1};
    const auto gpu = attnpool::select_bandwidth(xv, yv, {}, opts_for(backend::cuda_fused));
    const auto cpu = attnpool::select_bandwidth(xv, yv, {}, opts_for(backend::cpu));
    EXPECT_TRUE(std::isfinite(gpu.bandwidth));
    EXPECT_GT(gpu.bandwidth, 0.0);
    EXPECT_GE(gpu.bandwidth, gpu.grid.front());
    EXPECT_LE(gpu.bandwidth, gpu.grid.back());
    for (std::size_t k = 0; k < gpu.cv.size(); ++k) {
      ASSERT_TRUE(std::isfinite(gpu.cv[k])) << "k=" << k;
      EXPECT_NEAR(gpu.cv[k], cpu.cv[k], 1e-5 * cpu.cv[k] + 1e-12) << "k=" << k;
    }
  }
}

}  // namespace
