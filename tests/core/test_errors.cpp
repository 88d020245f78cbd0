// Every bad input gets attnpool::invalid_argument naming the argument and the value, on every
// host backend, and the output buffer is left untouched.
#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

namespace {

using attnpool::backend;
using attnpool::const_view;
using attnpool::mutable_view;

constexpr float kSentinel = 42.0f;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// A valid 3-query, 4-key, d = 2, dv = 1 problem that each case breaks in one place.
struct call {
  std::vector<float> q = {0, 0, 1, 1, 2, 2};
  std::vector<float> k = {0, 1, 1, 0, 2, 1, 3, 3};
  std::vector<float> v = {1, 2, 3, 4};
  std::vector<float> out = std::vector<float>(3, kSentinel);
  const_view qv{q.data(), 3, 2}, kv{k.data(), 4, 2}, vv{v.data(), 4, 1};
  mutable_view ov{out.data(), 3, 1};
  attnpool::pool_params params{};
  attnpool::options opts{};

  void run() { attnpool::pool(qv, kv, vv, ov, params, opts); }
};

// Expects invalid_argument whose message contains every fragment, and an untouched output.
void expect_rejected(const std::function<void(call&)>& breakit,
                     std::initializer_list<std::string> fragments) {
  for (backend b : {backend::reference, backend::cpu, backend::cuda_fused, backend::cuda_unfused}) {
    call c;
    c.opts.backend = b;
    breakit(c);
    SCOPED_TRACE(std::string("backend=") + attnpool::to_string(b));
    try {
      c.run();
      ADD_FAILURE() << "no exception";
    } catch (const attnpool::invalid_argument& e) {
      for (const auto& f : fragments) {
        EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
            << "message '" << e.what() << "' lacks '" << f << "'";
      }
    }
    for (float o : c.out) EXPECT_EQ(o, kSentinel) << "output was written before the error";
  }
}

TEST(Errors, Bandwidth) {
  expect_rejected([](call& c) { c.params.bandwidth = -1; }, {"bandwidth", "-1"});
  expect_rejected([](call& c) { c.params.bandwidth = 0; }, {"bandwidth", "got 0"});
  expect_rejected([](call& c) { c.params.bandwidth = std::nan(""); }, {"bandwidth", "nan"});
  expect_rejected([](call& c) { c.params.bandwidth = INFINITY; }, {"bandwidth", "inf"});
  expect_rejected([](call& c) { c.params.bandwidth = 1e-30; }, {"bandwidth", "1e-30", "too small"});
}

TEST(Errors, Shapes) {
  expect_rejected([](call& c) { c.kv.rows = c.vv.rows = 0; }, {"keys.rows (m)", "got 0"});
  expect_rejected([](call& c) { c.qv.cols = 0; }, {"queries.cols (d)", "got 0"});
  expect_rejected([](call& c) { c.vv.cols = c.ov.cols = 0; }, {"values.cols (dv)", "got 0"});
  expect_rejected([](call& c) { c.kv.cols = 1; }, {"keys.cols", "got 1"});
  expect_rejected([](call& c) { c.vv.rows = 3; }, {"values.rows", "got 3"});
  expect_rejected([](call& c) { c.ov.rows = 2; }, {"out.rows", "got 2"});
  expect_rejected([](call& c) { c.ov.cols = 2; }, {"out.cols", "got 2"});
}

TEST(Errors, LeadingDimensions) {
  expect_rejected([](call& c) { c.qv.ld = 1; }, {"queries.ld", "got 1"});
  expect_rejected([](call& c) { c.kv.ld = 1; }, {"keys.ld", "got 1"});
  expect_rejected([](call& c) { c.vv.ld = 0; }, {"values.ld", "got 0"});
  expect_rejected([](call& c) { c.ov.ld = 0; }, {"out.ld", "got 0"});
}

TEST(Errors, NullPointers) {
  expect_rejected([](call& c) { c.qv.data = nullptr; }, {"queries.data is null", "3 x 2"});
  expect_rejected([](call& c) { c.kv.data = nullptr; }, {"keys.data is null"});
  expect_rejected([](call& c) { c.vv.data = nullptr; }, {"values.data is null"});
  expect_rejected([](call& c) { c.ov.data = nullptr; }, {"out.data is null"});
}

TEST(Errors, NonFiniteInputs) {
  expect_rejected([](call& c) { c.q[3] = kNaN; }, {"queries(1, 1)", "nan"});
  expect_rejected([](call& c) { c.k[0] = kInf; }, {"keys(0, 0)", "inf"});
  expect_rejected([](call& c) { c.v[2] = -kInf; }, {"values(2, 0)", "-inf"});
}

TEST(Errors, CoordinatesThatOverflowFloatScores) {
  expect_rejected([](call& c) { c.k[0] = 3e19f; }, {"coordinates up to", "overflow float32"});
}

TEST(Errors, SizeOverflow) {
  const std::size_t huge = std::size_t{1} << 40;
  expect_rejected([&](call& c) { c.qv.rows = c.ov.rows = huge; c.kv.rows = c.vv.rows = huge; },
                  {"n * m", "overflows size_t"});
  expect_rejected([&](call& c) { c.qv.rows = c.ov.rows = std::size_t{1} << 62; c.qv.ld = 8; },
                  {"queries", "overflows size_t"});
}

TEST(Errors, CheckFiniteCanBeSwitchedOff) {
  call c;
  c.q[0] = kNaN;
  c.opts.backend = backend::cpu;
  c.opts.check_finite = false;
  c.run();  // no throw: the caller took responsibility
  EXPECT_TRUE(std::isnan(c.out[0]));
  EXPECT_FALSE(std::isnan(c.out[1]));
}

TEST(Errors, WeightsAndAverageChecksToo) {
  call c;
  std::vector<float> w(12, kSentinel);
  EXPECT_THROW(attnpool::attention_weights(c.qv, c.kv, {w.data(), 3, 3}, {}, {}),
               attnpool::invalid_argument);
  EXPECT_THROW(attnpool::attention_weights(c.qv, c.kv, {w.data(), 3, 4}, {-2.0}, {}),
               attnpool::invalid_argument);
  for (float x : w) EXPECT_EQ(x, kSentinel);
  EXPECT_THROW(attnpool::average_pool({c.v.data(), 0, 1}, c.ov), attnpool::invalid_argument);
  EXPECT_THROW(attnpool::average_pool(c.vv, {c.out.data(), 3, 2}), attnpool::invalid_argument);
}

TEST(Errors, SpanOverloadsCheckTheirSizes) {
  const std::vector<float> q = {1, 2, 3}, k = {1, 2, 3, 4}, v = {1, 2, 3};
  EXPECT_THROW(attnpool::pool(q, k, v), attnpool::invalid_argument);          // 3 values, 4 keys
  EXPECT_THROW(attnpool::pool(q, k, k, 2), attnpool::invalid_argument);       // 3 % 2 != 0
  EXPECT_THROW(attnpool::pool(q, {}, v), attnpool::invalid_argument);         // no keys
}

TEST(Errors, CudaBackendWithoutCudaSaysSo) {
  if (attnpool::cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  call c;
  c.opts.backend = backend::cuda_fused;
  try {
    c.run();
    ADD_FAILURE() << "no exception";
  } catch (const attnpool::cuda_error& e) {
    SUCCEED() << e.what();
  }
}

}  // namespace
