// The device-pointer API's contract: asynchronous work on a caller's stream with a caller's
// workspace, check_finite on device data with the host checks' words, and the errors: a
// too-small workspace, a non-CUDA backend, an allocation that cannot succeed.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include "cuda_test_support.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace attnpool::test {
namespace {

// The message of the exception `f` throws as E, or a failure.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return {};
}

// The text after the "fn: " prefix, which differs between the host and device entry points.
std::string without_prefix(const std::string& msg) {
  const auto colon = msg.find(": ");
  return colon == std::string::npos ? msg : msg.substr(colon + 2);
}

// The invalid_argument message of cuda::pool on a device copy of p, on `which`, writing into
// `out` (poisoned, so that a test can check it was left alone).
std::string device_pool_message(const problem& p, const pool_params& params, backend which,
                                poisoned_output& out) {
  const device_problem dp(p);
  device_workspace ws(cuda::pool_workspace_size(p.n, p.m, p.d, p.dv, params, which));
  options opts;
  opts.backend = which;
  opts.workspace = ws.data();
  opts.workspace_bytes = ws.bytes();
  return message_of<invalid_argument>(
      [&] { cuda::pool(dp.queries(), dp.keys(), dp.values(), out.view(), params, opts); });
}

class stream_guard {
 public:
  stream_guard() { cuda_ok(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "stream"); }
  stream_guard(const stream_guard&) = delete;
  stream_guard& operator=(const stream_guard&) = delete;
  ~stream_guard() { static_cast<void>(cudaStreamDestroy(s_)); }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

TEST(cuda_api, device_count_is_consistent_with_availability) {
  // Runs everywhere: on a machine without a GPU this is the check that the CUDA build picks
  // the CPU for backend::automatic.
  const int count = cuda::device_count();
  EXPECT_GE(count, 0);
  EXPECT_EQ(cuda_available(), count > 0);
  EXPECT_EQ(resolve_backend(backend::automatic), count > 0 ? backend::cuda_fused : backend::cpu);
  if (count == 0) GTEST_SKIP() << "no CUDA device";
}

TEST(cuda_api, pool_on_a_stream_with_a_workspace) {
  ATTNPOOL_REQUIRE_DEVICE();
  for (backend which : {backend::cuda_fused, backend::cuda_unfused, backend::automatic}) {
    const problem p = make_problem(7, 4097, 3, 2, fresh_seed());
    SCOPED_TRACE(describe(p, 2.0) + " backend=" + to_string(which));
    const pool_params params{2.0};
    const device_problem dp(p);
    poisoned_output out(p.n, p.dv, 1);
    const stream_guard stream;
    device_workspace ws(cuda::pool_workspace_size(p.n, p.m, p.d, p.dv, params, which));
    options opts;
    opts.backend = which;
    opts.stream = stream.get();
    opts.workspace = ws.data();
    opts.workspace_bytes = ws.bytes();
    opts.check_finite = false;  // fully asynchronous
    cuda::pool(dp.queries(), dp.keys(), dp.values(), out.view(), params, opts);
    cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
    const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
    // Unit-cube data at h = 2: the unfused path's extra score error (test_cuda_unfused.cpp)
    // is <= (d + 4) eps (2 sqrt(3))^2 / (2 h^2) ~ 1.3e-6, well inside the 1e-5 relative term.
    expect_matches_reference(p, params, out.fetch().data(), out.ld, ref);
  }
}

TEST(cuda_api, workspace_too_small_names_both_sizes) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(1, 100000, 1, 1, fresh_seed());
  const pool_params params{1.0};
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, 0);
  for (backend which : {backend::cuda_fused, backend::cuda_unfused}) {
    const std::size_t need = cuda::pool_workspace_size(p.n, p.m, p.d, p.dv, params, which);
    ASSERT_GT(need, 64u);
    device_workspace ws(need - 64);
    options opts;
    opts.backend = which;
    opts.workspace = ws.data();
    opts.workspace_bytes = ws.bytes();
    const std::string msg = message_of<invalid_argument>(
        [&] { cuda::pool(dp.queries(), dp.keys(), dp.values(), out.view(), params, opts); });
    EXPECT_NE(msg.find(std::to_string(need)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(need - 64)), std::string::npos) << msg;
    // Nothing ran: the output is still poisoned.
    const std::vector<float> host = out.dev.download();
    EXPECT_TRUE(std::isnan(host[0]));
  }
}

TEST(cuda_api, non_cuda_backend_is_rejected) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(3, 5, 1, 1, fresh_seed());
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, 0);
  options opts;
  opts.backend = backend::cpu;
  const std::string msg = message_of<invalid_argument>(
      [&] { cuda::pool(dp.queries(), dp.keys(), dp.values(), out.view(), {}, opts); });
  EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
}

TEST(cuda_api, check_finite_on_device_uses_the_host_words) {
  ATTNPOOL_REQUIRE_DEVICE();
  const pool_params params{1.0};
  struct poison_at {
    int matrix;  // 0 q, 1 k, 2 v
    std::size_t row, col;
    float value;
  };
  for (const poison_at& bad : {poison_at{0, 2, 1, std::numeric_limits<float>::quiet_NaN()},
                               poison_at{1, 4, 0, std::numeric_limits<float>::infinity()},
                               poison_at{2, 6, 1, -std::numeric_limits<float>::infinity()}}) {
    problem p = make_problem(9, 11, 2, 2, fresh_seed());
    std::vector<float>& a = bad.matrix == 0 ? p.q : bad.matrix == 1 ? p.k : p.v;
    const std::size_t cols = bad.matrix == 2 ? p.dv : p.d;
    a[bad.row * (cols + p.pad) + bad.col] = bad.value;
    // A second bad element later in row-major order: the first one must be reported.
    a[(bad.row + 1) * (cols + p.pad)] = std::numeric_limits<float>::quiet_NaN();

    options host_opts;
    host_opts.backend = backend::cpu;
    std::vector<float> host_out(p.n * p.dv);
    const std::string host_msg = message_of<invalid_argument>([&] {
      pool(p.queries(), p.keys(), p.values(), mutable_view{host_out.data(), p.n, p.dv}, params,
           host_opts);
    });
    for (backend which : {backend::cuda_fused, backend::cuda_unfused}) {
      poisoned_output out(p.n, p.dv, 0);
      const std::string dev_msg = device_pool_message(p, params, which, out);
      EXPECT_EQ(without_prefix(dev_msg), without_prefix(host_msg)) << to_string(which);
      EXPECT_EQ(dev_msg.rfind("cuda::pool: ", 0), 0u) << dev_msg;
    }
  }
}

TEST(cuda_api, score_range_check_on_device_uses_the_host_words) {
  ATTNPOOL_REQUIRE_DEVICE();
  const pool_params params{1e-10};
  problem p = make_problem(4, 6, 2, 1, fresh_seed());
  p.k[3 * (p.d + p.pad) + 1] = 1e30f;
  options host_opts;
  host_opts.backend = backend::cpu;
  std::vector<float> host_out(p.n * p.dv);
  const std::string host_msg = message_of<invalid_argument>([&] {
    pool(p.queries(), p.keys(), p.values(), mutable_view{host_out.data(), p.n, p.dv}, params,
         host_opts);
  });
  const device_problem dp(p);
  poisoned_output out(p.n, p.dv, 0);
  device_workspace ws(cuda::pool_workspace_size(p.n, p.m, p.d, p.dv, params, backend::cuda_fused));
  options opts;
  opts.workspace = ws.data();
  opts.workspace_bytes = ws.bytes();
  const std::string dev_msg = message_of<invalid_argument>(
      [&] { cuda::pool(dp.queries(), dp.keys(), dp.values(), out.view(), params, opts); });
  EXPECT_EQ(without_prefix(dev_msg), without_prefix(host_msg));
}

// Values the device API cannot scale: with check_finite its scan refuses them by name, for the
// fused and the unfused path, and leaves the output as it was. The host entry point pools them.
TEST(cuda_api, values_near_float_max_are_refused_on_device) {
  ATTNPOOL_REQUIRE_DEVICE();
  const pool_params params{1.0};
  problem p = make_problem(3, 4, 1, 1, fresh_seed());
  for (float& x : p.v) x = 3e38f;
  for (backend which : {backend::cuda_fused, backend::cuda_unfused}) {
    poisoned_output out(p.n, p.dv, 0);
    const std::string msg = device_pool_message(p, params, which, out);
    EXPECT_NE(msg.find("cuda::pool: values up to 3.00000001e+38 over 4 keys"), std::string::npos)
        << msg;
    for (float x : out.fetch()) EXPECT_TRUE(std::isnan(x)) << "the output was written";
  }
  options host_opts;
  host_opts.backend = backend::cuda_fused;
  std::vector<float> host_out(p.n * p.dv);
  pool(p.queries(), p.keys(), p.values(), mutable_view{host_out.data(), p.n, p.dv}, params,
       host_opts);
  for (float x : host_out) EXPECT_FLOAT_EQ(x, 3e38f);
}

// n = m = 1e6 on the unfused path asks for 4e12 bytes of weights: cuda_error naming the size,
// no abort, and the device stays usable afterwards.
TEST(cuda_api, impossible_unfused_allocation_throws_with_its_size) {
  ATTNPOOL_REQUIRE_DEVICE();
  constexpr std::size_t kN = 1000000;
  std::vector<float> q(kN), k(kN), v(kN);
  for (std::size_t i = 0; i < kN; ++i) {
    q[i] = static_cast<float>(i) * 1e-6f;
    k[i] = static_cast<float>(i) * 1e-6f;
    v[i] = 1.0f;
  }
  const pool_params params{1.0};
  const std::size_t need = cuda::pool_workspace_size(kN, kN, 1, 1, params, backend::cuda_unfused);
  ASSERT_GE(need, kN * kN * sizeof(float));
  options opts;
  opts.backend = backend::cuda_unfused;
  std::vector<float> out(kN);
  const std::string msg = message_of<cuda_error>([&] {
    pool(const_view{q.data(), kN, 1}, const_view{k.data(), kN, 1}, const_view{v.data(), kN, 1},
         mutable_view{out.data(), kN, 1}, params, opts);
  });
  EXPECT_NE(msg.find(std::to_string(need)), std::string::npos) << msg;

  // The failed cudaMalloc left no error behind: a small call still works.
  const problem p = make_problem(7, 7, 1, 1, fresh_seed());
  const std::vector<float> small = run_pool(p, params, backend::cuda_fused, 0);
  const reference::pooled ref = reference::pool(p.queries(), p.keys(), p.values(), params);
  expect_matches_reference(p, params, small.data(), p.dv, ref);
}

TEST(cuda_api, average_pool_on_device) {
  ATTNPOOL_REQUIRE_DEVICE();
  const problem p = make_problem(1, 4097, 1, 5, fresh_seed());
  const device_problem dp(p);
  poisoned_output out(33, p.dv, 2);
  options opts;
  cuda::average_pool(dp.values(), out.view(), opts);
  cuda_ok(cudaDeviceSynchronize(), "sync");
  const std::vector<float>& got = out.fetch();
  for (std::size_t c = 0; c < p.dv; ++c) {
    double sum = 0.0;
    for (std::size_t j = 0; j < p.m; ++j) sum += p.values()(j, c);
    const double mean = sum / static_cast<double>(p.m);
    for (std::size_t i = 0; i < out.n; ++i)
      EXPECT_NEAR(got[i * out.ld + c], mean, 1e-6 * std::fabs(mean) + 1e-7);
  }
}

}  // namespace
}  // namespace attnpool::test
