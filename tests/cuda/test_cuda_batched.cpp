// Batched problems and shards on the GPU: pool_batched in one fused launch, pool_partial + merge_partials on the
// device, and pool_sharded over the visible GPUs (several shards on one GPU where there is one).
// Every result is checked against the fp64 reference, and against the unbatched / unsharded
// fused path (bitwise where the arithmetic is the same, else within a derived tolerance).
// The first tests (batch_plan_*, *_validation) run without a GPU; the rest skip with
// "no CUDA device".
#include <attnpool/batched.hpp>
#include <attnpool/cuda.hpp>
#include <attnpool/multi_gpu.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"
#include "kernels/fused/plan.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace attnpool::test {
namespace {

template <class F>
void expect_invalid(F&& f, const std::string& words) {
  try {
    f();
    ADD_FAILURE() << "expected invalid_argument mentioning '" << words << "'";
  } catch (const invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

// B problems concatenated row-wise with the problems' own padded rows (ld = d + 1, dv + 1, NaN
// in the pads), so the batch exercises leading dimensions and never-read pads too.
struct batch {
  std::size_t d = 0, dv = 0;
  std::vector<problem> parts;
  std::vector<float> q, k, v;
  std::vector<std::size_t> qoff{0}, koff{0};

  std::size_t rows() const { return qoff.back(); }
  const_view queries(const float* base) const { return {base, qoff.back(), d, d + 1}; }
  const_view keys(const float* base) const { return {base, koff.back(), d, d + 1}; }
  const_view values(const float* base) const { return {base, koff.back(), dv, dv + 1}; }
};

batch make_batch(const std::vector<std::pair<std::size_t, std::size_t>>& sizes, std::size_t d,
                 std::size_t dv) {
  batch b;
  b.d = d;
  b.dv = dv;
  for (auto [n, m] : sizes) {
    b.parts.push_back(make_problem(n, m, d, dv, fresh_seed(), 0.0f, 1));
    const problem& p = b.parts.back();
    b.q.insert(b.q.end(), p.q.begin(), p.q.end());
    b.k.insert(b.k.end(), p.k.begin(), p.k.end());
    b.v.insert(b.v.end(), p.v.begin(), p.v.end());
    b.qoff.push_back(b.qoff.back() + n);
    b.koff.push_back(b.koff.back() + m);
  }
  return b;
}

// Every (n_b, m_b) in {0, 1, 7, 129, 4097}^2 (m_b = 0 only with n_b = 0), interleaved.
std::vector<std::pair<std::size_t, std::size_t>> mixed_sizes() {
  return attnpool::test::mixed_problem_sizes(4097);
}

// ---- host-only: the block table and argument checks ------------------------------------------

TEST(batch_plan, blocks_cover_every_row_once_within_one_problem) {
  const std::vector<std::size_t> qoff{0, 0, 1, 1, 300, 557, 557, 558};
  const std::vector<std::size_t> koff{0, 5, 6, 6, 10, 4000, 4000, 4001};
  for (std::size_t rpb : {1u, 7u, 128u, 256u}) {
    const auto blocks = kernels::plan_batch_blocks(qoff, koff, rpb);
    EXPECT_LE(blocks.size(), kernels::max_batch_blocks(qoff.size() - 1, qoff.back(), rpb));
    std::size_t next = 0;
    for (const auto& bl : blocks) {
      EXPECT_EQ(bl.row_begin, next) << "rows are covered in order, each once";
      EXPECT_GT(bl.row_end, bl.row_begin);
      EXPECT_LE(bl.row_end - bl.row_begin, rpb);
      // The block's problem: the one whose query range holds its rows.
      std::size_t p = 0;
      while (!(qoff[p] <= bl.row_begin && bl.row_end <= qoff[p + 1] && qoff[p] < qoff[p + 1])) ++p;
      EXPECT_EQ(bl.key_begin, koff[p]);
      EXPECT_EQ(bl.key_end, koff[p + 1]);
      next = bl.row_end;
    }
    EXPECT_EQ(next, qoff.back());
  }
  EXPECT_TRUE(kernels::plan_batch_blocks(std::vector<std::size_t>{0, 0},
                                         std::vector<std::size_t>{0, 3}, 128)
                  .empty());
}

// Argument errors are found before any device memory is touched, so host pointers stand in for
// device ones here and these run without a GPU.
TEST(batched_validation, device_api_names_the_argument_and_the_problem) {
  const std::vector<float> buf(64, 0.5f);
  const const_view q{buf.data(), 5, 1}, k{buf.data(), 9, 1}, v{buf.data(), 9, 1};
  std::vector<float> obuf(5);
  const mutable_view out{obuf.data(), 5, 1};
  options o;
  o.backend = backend::cuda_fused;
  auto call = [&](std::vector<std::size_t> qo, std::vector<std::size_t> ko, pool_params p = {},
                  options oo = {}) { cuda::pool_batched(q, k, v, out, qo, ko, p, oo); };
  expect_invalid([&] { call({0, 3, 5}, {0, 9}); }, "B + 1");
  expect_invalid([&] { call({1, 3, 5}, {0, 4, 9}); }, "query_offsets[0] must be 0");
  expect_invalid([&] { call({0, 4, 3, 5}, {0, 4, 4, 9}); }, "problem 1 has query_offsets[1] = 4 >");
  expect_invalid([&] { call({0, 3, 4}, {0, 4, 9}); }, "queries.rows (5)");
  expect_invalid([&] { call({0, 3, 5}, {0, 9, 9}); }, "problem 1 has 2 queries but no keys");
  pool_params loo;
  loo.mask = mask::leave_one_out;
  expect_invalid([&] { call({0, 3, 5}, {0, 4, 9}, loo); }, "not supported in batches");
  expect_invalid([&] { call({0, 3, 5}, {0, 4, 9}, pool_params{-1.0}); }, "bandwidth");
  options unfused;
  unfused.backend = backend::cuda_unfused;
  expect_invalid([&] { call({0, 3, 5}, {0, 4, 9}, {}, unfused); }, "cuda_fused or automatic");
  // Too small a workspace is named with the size it needs.
  o.workspace_bytes = 1;
  expect_invalid([&] { call({0, 3, 5}, {0, 4, 9}, {}, o); }, "workspace_bytes is 1");
}

TEST(batched_validation, host_api_refuses_cuda_unfused_by_name) {
  const std::vector<float> buf(64, 0.5f);
  std::vector<float> obuf(5);
  options o;
  o.backend = backend::cuda_unfused;
  expect_invalid(
      [&] {
        pool_batched({buf.data(), 5, 1}, {buf.data(), 9, 1}, {buf.data(), 9, 1},
                     {obuf.data(), 5, 1}, std::vector<std::size_t>{0, 3, 5},
                     std::vector<std::size_t>{0, 4, 9}, {}, o);
      },
      "backend cuda_unfused is not implemented");
  expect_invalid(
      [&] {
        pool_partial({buf.data(), 5, 1}, {buf.data(), 9, 1}, {buf.data(), 9, 1}, {}, o);
      },
      "backend cuda_unfused is not implemented");
}

TEST(sharded_validation, partial_and_merge_arguments) {
  const std::vector<float> buf(256, 0.5f);
  std::vector<float> obuf(8);
  const const_view q{buf.data(), 4, 2}, k{buf.data(), 6, 2}, v{buf.data(), 6, 1};
  std::vector<float> st(4 * 3);
  const cuda::partial_view pv = cuda::packed_partial(st.data(), 4, 1);
  options o;
  pool_params nearest{0.5};
  nearest.kernel = kernel::boxcar;
  nearest.empty = empty_support::nearest;
  expect_invalid([&] { cuda::pool_partial(q, k, v, pv, nearest, o); }, "nearest is not supported");
  expect_invalid([&] { cuda::pool_partial(q, k, v, cuda::packed_partial(st.data(), 3, 1), {}, o); },
                 "out.rows must equal queries.rows");
  cuda::partial_view no_max = pv;
  no_max.max = nullptr;
  expect_invalid([&] { cuda::pool_partial(q, k, v, no_max, {}, o); }, "out.max and out.sum");

  const cuda::stacked_partials two = cuda::packed_partials(buf.data(), 2, 4, 1);
  expect_invalid(
      [&] {
        cuda::merge_partials(two, {obuf.data(), 3, 1}, {}, o);
      },
      "out must be 4 x 1");
  cuda::stacked_partials none = two;
  none.shards = 0;
  expect_invalid([&] { cuda::merge_partials(none, {obuf.data(), 4, 1}, {}, o); }, "must be >= 1");
  cuda::stacked_partials overlap = two;
  overlap.state_stride = 3;
  expect_invalid(
      [&] {
        cuda::merge_partials(overlap, {obuf.data(), 4, 1}, {}, o);
      },
      "state_stride must be >= n (4)");
  overlap = two;
  overlap.acc_stride = 2;
  expect_invalid(
      [&] {
        cuda::merge_partials(overlap, {obuf.data(), 4, 1}, {}, o);
      },
      "acc_stride must be >= (n - 1) * acc.ld + dv = 4");
  // The packed layout: [max n][sum n][acc n x dv].
  EXPECT_EQ(cuda::packed_partial_floats(4, 1), 12u);
  EXPECT_EQ(pv.sum, st.data() + 4);
  EXPECT_EQ(pv.acc.data, st.data() + 8);
  EXPECT_EQ(two.state_stride, 12u);
}

TEST(sharded_validation, pool_sharded_arguments_and_devices) {
  const problem p = make_problem(3, 10, 1, 1, fresh_seed());
  std::vector<float> out(3);
  pool_params loo;
  loo.mask = mask::leave_one_out;
  expect_invalid(
      [&] {
        pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 3, 1}, loo);
      },
      "mask");
  options cpu;
  cpu.backend = backend::cpu;
  expect_invalid(
      [&] {
        pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 3, 1}, {}, {}, cpu);
      },
      "backend must be cuda_fused");
  const int bad_device[] = {0, 99};
  sharding how;
  how.devices = bad_device;
  if (cuda::device_count() == 0) {
    EXPECT_THROW(pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 3, 1}, {}, how),
                 cuda_error);
  } else {
    expect_invalid(
        [&] {
          pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 3, 1}, {}, how);
        },
        "how.devices[1] = 99 is not a device ordinal");
  }
}

// ---- batched on the GPU ----------------------------------------------------------------------

struct batched_run {
  std::vector<float> out;  // rows() x (dv + 2), pads NaN
  std::size_t ld = 0;
};

batched_run run_batched(const batch& b, const pool_params& params, bool check_finite = true) {
  const device_array q(b.q), k(b.k), v(b.v);
  poisoned_output out(b.rows(), b.dv, 2);
  device_workspace ws(
      cuda::pool_batched_workspace_size(b.parts.size(), b.rows(), b.d, b.dv, params));
  options o;
  o.backend = backend::cuda_fused;
  o.check_finite = check_finite;
  o.workspace = ws.data();
  o.workspace_bytes = ws.bytes();
  cuda::pool_batched(b.queries(q.data()), b.keys(k.data()), b.values(v.data()), out.view(), b.qoff,
                     b.koff, params, o);
  cuda_ok(cudaDeviceSynchronize(), "sync");
  return {out.fetch(), out.ld};
}

TEST(cuda_batched, mixed_sizes_match_reference_and_separate_calls_bitwise) {
  ATTNPOOL_REQUIRE_DEVICE();
  double worst = 0.0;
  for (std::size_t d : {1, 3}) {
    for (std::size_t dv : {1, 3}) {
      const batch b = make_batch(mixed_sizes(), d, dv);
      for (double h : {0.1, 1.0}) {
        const pool_params params{h};
        const batched_run r = run_batched(b, params);
        for (std::size_t p = 0; p < b.parts.size(); ++p) {
          const problem& pr = b.parts[p];
          if (pr.n == 0) continue;
          SCOPED_TRACE("problem " + std::to_string(p) + ": " + describe(pr, h));
          const float* got = r.out.data() + b.qoff[p] * r.ld;
          const auto ref = reference::pool(pr.queries(), pr.keys(), pr.values(), params);
          worst = std::max(worst, expect_matches_reference(pr, params, got, r.ld, ref));
          // Same per-row code and key order as one cuda::pool call without split-K.
          const std::vector<float> sep = run_fused(pr, params, 1, 2);
          EXPECT_EQ(0, std::memcmp(sep.data(), got, pr.n * r.ld * sizeof(float)))
              << "not bitwise the separate call";
        }
      }
    }
  }
  std::printf("cuda_batched: worst error %.3g of the tolerance\n", worst);
}

TEST(cuda_batched, every_dimension_bucket_and_kernel) {
  ATTNPOOL_REQUIRE_DEVICE();
  const std::vector<std::pair<std::size_t, std::size_t>> sizes{
      {7, 300}, {1, 1}, {129, 7}, {300, 129}};
  for (auto [d, dv] : std::vector<std::pair<std::size_t, std::size_t>>{
           {2, 1}, {4, 2}, {8, 4}, {16, 8}, {32, 16}, {64, 64}, {5, 3}, {70, 2}, {3, 100}}) {
    const batch b = make_batch(sizes, d, dv);
    for (kernel kern : {kernel::gaussian, kernel::laplacian, kernel::tricube}) {
      pool_params params{d > 8 ? 2.0 : 0.5};
      params.kernel = kern;
      params.empty = empty_support::nan;
      const batched_run r = run_batched(b, params);
      for (std::size_t p = 0; p < b.parts.size(); ++p) {
        const problem& pr = b.parts[p];
        SCOPED_TRACE("problem " + std::to_string(p) + " kernel " + to_string(kern) + ": " +
                     describe(pr, params.bandwidth));
        expect_matches_reference(pr, params, r.out.data() + b.qoff[p] * r.ld, r.ld,
                                 reference::pool(pr.queries(), pr.keys(), pr.values(), params));
      }
    }
  }
}

TEST(cuda_batched, bitwise_repeatable_and_host_api_agrees) {
  ATTNPOOL_REQUIRE_DEVICE();
  const batch b = make_batch(mixed_sizes(), 2, 2);
  const pool_params params{0.3};
  const batched_run one = run_batched(b, params), two = run_batched(b, params, false);
  EXPECT_EQ(0, std::memcmp(one.out.data(), two.out.data(), one.out.size() * sizeof(float)));
  std::vector<float> host(b.rows() * b.dv);
  poison(host);
  options o;
  o.backend = backend::cuda_fused;
  pool_batched(b.queries(b.q.data()), b.keys(b.k.data()), b.values(b.v.data()),
               {host.data(), b.rows(), b.dv}, b.qoff, b.koff, params, o);
  for (std::size_t i = 0; i < b.rows(); ++i)
    EXPECT_EQ(
        0, std::memcmp(host.data() + i * b.dv, one.out.data() + i * one.ld, b.dv * sizeof(float)))
        << "row " << i;
}

TEST(cuda_batched, empty_batches_and_empty_problems) {
  ATTNPOOL_REQUIRE_DEVICE();
  // Only problems without queries: nothing is launched, nothing written.
  const batch none = make_batch({{0, 0}, {0, 5}, {0, 0}}, 1, 1);
  options o;
  o.backend = backend::cuda_fused;
  EXPECT_NO_THROW(cuda::pool_batched({nullptr, 0, 1}, none.keys(nullptr), none.values(nullptr),
                                     {nullptr, 0, 1}, none.qoff, none.koff, {}, o));
  // Empty problems first, last and between one-row problems.
  const batch b = make_batch({{0, 0}, {1, 1}, {0, 3}, {1, 2}, {0, 0}}, 1, 1);
  const batched_run r = run_batched(b, {1.0});
  for (std::size_t p : {1u, 3u}) {
    const problem& pr = b.parts[p];
    expect_matches_reference(pr, {1.0}, r.out.data() + b.qoff[p] * r.ld, r.ld,
                             reference::pool(pr.queries(), pr.keys(), pr.values(), {1.0}));
  }
}

TEST(cuda_batched, empty_support_names_the_problem_or_gives_nan) {
  ATTNPOOL_REQUIRE_DEVICE();
  const batch b = make_batch({{3, 1}, {7, 129}}, 2, 1);
  pool_params params{1e-3};
  params.kernel = kernel::epanechnikov;
  expect_invalid([&] { run_batched(b, params); }, "of problem 0");
  params.empty = empty_support::nan;
  const batched_run r = run_batched(b, params);
  for (std::size_t p = 0; p < 2; ++p) {
    const problem& pr = b.parts[p];
    expect_matches_reference(pr, params, r.out.data() + b.qoff[p] * r.ld, r.ld,
                             reference::pool(pr.queries(), pr.keys(), pr.values(), params));
  }
}

// ---- sharded keys on the GPU -----------------------------------------------------------------

// S shards of p's keys (shard s: keys [m s / S, m (s + 1) / S)) through cuda::pool_partial into
// one packed buffer, then cuda::merge_partials; returns the host copy of the n x dv result
// (ld = dv + 2, pads checked).
std::vector<float> run_sharded(const problem& p, std::size_t shards, const pool_params& params) {
  const device_problem dp(p);
  const std::size_t per = cuda::packed_partial_floats(p.n, p.dv);
  device_array stacked(shards * per);
  for (std::size_t s = 0; s < shards; ++s) {
    const std::size_t k0 = p.m * s / shards, k1 = p.m * (s + 1) / shards;
    device_workspace ws(cuda::pool_partial_workspace_size(p.n, k1 - k0, p.d, p.dv, params));
    options o;
    o.workspace = ws.data();
    o.workspace_bytes = ws.bytes();
    const const_view k = dp.keys(), v = dp.values();
    cuda::pool_partial(dp.queries(), {k.data + k0 * k.ld, k1 - k0, k.cols, k.ld},
                       {v.data + k0 * v.ld, k1 - k0, v.cols, v.ld},
                       cuda::packed_partial(stacked.data() + s * per, p.n, p.dv), params, o);
    cuda_ok(cudaDeviceSynchronize(), "sync");  // before ws goes
  }
  poisoned_output out(p.n, p.dv, 2);
  device_workspace ws(cuda::merge_partials_workspace_size(params));
  options o;
  o.workspace = ws.data();
  o.workspace_bytes = ws.bytes();
  cuda::merge_partials(cuda::packed_partials(stacked.data(), shards, p.n, p.dv), out.view(), params,
                       o);
  cuda_ok(cudaDeviceSynchronize(), "sync");
  return out.fetch();
}

// Tolerance of sharded against unsharded, derived as in tests/core/test_batched.cpp: the two
// differ only in where the keys are split and so in the rescale factors 2^(max_a - max_b) at
// each merge. On the GPU those come from ex2.approx (relative error 2^-22 = 2.4e-7, 2.5x the
// CPU's exp2_poly), so the CPU test's 4e-6 relative of sum_j w_j |v_j| becomes 1e-5.
constexpr double kShardedRtol = 1e-5;

TEST(cuda_sharded, merged_shards_match_unsharded_and_reference) {
  ATTNPOOL_REQUIRE_DEVICE();
  double worst = 0.0;
  for (std::size_t d : {1, 3}) {
    for (std::size_t dv : {1, 3}) {
      const problem p = make_problem(129, 4097, d, dv, fresh_seed());
      for (double h : {0.05, 1.0}) {
        for (kernel kern : {kernel::gaussian, kernel::tricube}) {
          pool_params params{h};
          params.kernel = kern;
          params.empty = empty_support::nan;
          SCOPED_TRACE(describe(p, h) + " kernel=" + to_string(kern));
          const std::vector<float> whole = run_pool(p, params, backend::cuda_fused, 2);
          const auto ref = reference::pool(p.queries(), p.keys(), p.values(), params);
          for (std::size_t shards : {1, 2, 3, 7}) {
            const std::vector<float> merged = run_sharded(p, shards, params);
            const std::vector<float> again = run_sharded(p, shards, params);
            EXPECT_EQ(0, std::memcmp(merged.data(), again.data(), merged.size() * sizeof(float)))
                << "shards=" << shards << " not deterministic";
            if (shards == 1) {
              // One shard: the same kernel, key ranges and merge as cuda::pool, and merging a
              // single state is exact (2^0 = 1, 2^-inf = 0).
              EXPECT_EQ(0, std::memcmp(merged.data(), whole.data(), merged.size() * sizeof(float)))
                  << "one shard is not bitwise cuda::pool";
            }
            expect_matches_reference(p, params, merged.data(), dv + 2, ref);
            for (std::size_t i = 0; i < p.n; ++i) {
              for (std::size_t c = 0; c < dv; ++c) {
                const float a = merged[i * (dv + 2) + c], w = whole[i * (dv + 2) + c];
                if (std::isnan(w)) {
                  EXPECT_TRUE(std::isnan(a)) << "shards=" << shards << " row " << i;
                  continue;
                }
                const double tol = kShardedRtol * ref.abs_scale[i * dv + c] + 1e-30;
                const double err = std::fabs(static_cast<double>(a) - w);
                worst = std::max(worst, err / tol);
                EXPECT_LE(err, tol) << "shards=" << shards << " row " << i << " col " << c;
              }
            }
          }
        }
      }
    }
  }
  std::printf("cuda_sharded: worst sharded-vs-unsharded error %.3g of the tolerance\n", worst);
}

TEST(cuda_sharded, host_partials_merge_with_cpu_shards) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(129, 1500, 2, 3, fresh_seed());
  const pool_params params{0.2};
  const const_view k = p.keys(), v = p.values();
  std::vector<partial_states> parts;
  // Shard 0 on the GPU, shard 1 on the CPU engine: the states are interchangeable.
  parts.push_back(pool_partial(p.queries(), {k.data, 700, 2, k.ld}, {v.data, 700, 3, v.ld}, params,
                               opts_for(backend::cuda_fused)));
  parts.push_back(pool_partial(p.queries(), {k.row(700), 800, 2, k.ld}, {v.row(700), 800, 3, v.ld},
                               params, opts_for(backend::cpu)));
  std::vector<float> out(p.n * 3);
  poison(out);
  merge_partials(parts, {out.data(), p.n, 3}, params);
  expect_matches_reference(p, params, out.data(), 3,
                           reference::pool(p.queries(), p.keys(), p.values(), params));
}

TEST(cuda_sharded, empty_support_error_names_the_row) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(5, 40, 2, 1, fresh_seed());
  pool_params params{1e-4};
  params.kernel = kernel::boxcar;
  expect_invalid([&] { run_sharded(p, 3, params); }, "query row 0 has no key inside the support");
}

// ---- several shards over the visible GPUs ----------------------------------------------------

TEST(cuda_multi_gpu, pool_sharded_matches_the_device_pipeline_and_reference) {
  ATTNPOOL_REQUIRE_DEVICE();
  std::printf("cuda_multi_gpu: %d visible device(s)\n", cuda::device_count());
  for (std::size_t n : {1, 129}) {
    const problem p = make_problem(n, 4097, 3, 2, fresh_seed());
    const pool_params params{0.1};
    const auto ref = reference::pool(p.queries(), p.keys(), p.values(), params);
    for (std::size_t shards : {0, 1, 2, 3, 7}) {
      SCOPED_TRACE(describe(p, 0.1) + " shards=" + std::to_string(shards));
      sharding how;
      how.shards = shards;
      std::vector<float> out(n * 4);
      poison(out);
      pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), n, 2, 4}, params, how);
      expect_matches_reference(p, params, out.data(), 4, ref);
      for (std::size_t i = 0; i < n; ++i)
        EXPECT_TRUE(std::isnan(out[i * 4 + 2]) && std::isnan(out[i * 4 + 3])) << "pad written";
      if (cuda::device_count() == 1) {
        // One device: the same shards, kernels and merge as the device-pointer pipeline.
        const std::size_t s = shards == 0 ? 1 : shards;
        const std::vector<float> pipe = run_sharded(p, s, params);
        for (std::size_t i = 0; i < n; ++i)
          EXPECT_EQ(0, std::memcmp(out.data() + i * 4, pipe.data() + i * 4, 2 * sizeof(float)))
              << "row " << i;
      }
    }
    // An explicit device list naming device 0 twice: 5 shards, all on device 0.
    const int twice[] = {0, 0};
    sharding how;
    how.devices = twice;
    how.shards = 5;
    std::vector<float> out(n * 2), again(n * 2);
    pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), n, 2}, params, how);
    pool_sharded(p.queries(), p.keys(), p.values(), {again.data(), n, 2}, params, how);
    EXPECT_EQ(0, std::memcmp(out.data(), again.data(), out.size() * sizeof(float)));
    expect_matches_reference(p, params, out.data(), 2, ref);
  }
}

TEST(cuda_multi_gpu, shards_clamp_to_keys_and_empty_rows_are_reported) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(7, 3, 1, 1, fresh_seed());
  sharding how;
  how.shards = 10;  // more shards than keys: clamped to 3
  std::vector<float> out(7);
  pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 7, 1}, {1.0}, how);
  expect_matches_reference(p, {1.0}, out.data(), 1,
                           reference::pool(p.queries(), p.keys(), p.values(), {1.0}));
  pool_params params{1e-4};
  params.kernel = kernel::epanechnikov;
  expect_invalid(
      [&] {
        pool_sharded(p.queries(), p.keys(), p.values(), {out.data(), 7, 1}, params, how);
      },
      "in any shard");
}

}  // namespace
}  // namespace attnpool::test
