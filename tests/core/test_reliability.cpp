// Reliability of the public entry points: every view validated before memory is touched, no
// silent inf for finite inputs near float32's range, outputs untouched on error, one bandwidth
// limit, overlapping buffers refused, threads clamped and thread failures reported; then the
// property test over random magnitudes, kernels and bandwidths against the fp64 oracle.
#include <attnpool/batched.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include "src/validate/validate.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using attnpool::backend;
using attnpool::const_view;
using attnpool::test::expect_invalid;
using attnpool::kernel;
using attnpool::mutable_view;

constexpr float kSentinel = 42.0f;
constexpr float kFltMax = std::numeric_limits<float>::max();
constexpr std::size_t kHuge = std::size_t{1} << 40;  // rows no allocation could hold


bool all_finite(const std::vector<float>& a) {
  for (float x : a)
    if (!std::isfinite(x)) return false;
  return true;
}

const_view rows_of(const_view a, std::size_t r0, std::size_t r1) {
  return {a.data + r0 * a.ld, r1 - r0, a.cols, a.ld};
}

attnpool::options cpu() { return attnpool::test::opts_for(backend::cpu); }

// ---- 1. Every view validated before any memory access or allocation ------------------------

TEST(Reliability, NullViewsAreNamedInEveryEntryPoint) {
  std::vector<float> a(64, 0.5f), out(64, kSentinel);
  const float* nul = nullptr;
  const const_view ok{a.data(), 4, 1}, null4{nul, 4, 1};
  const mutable_view o4{out.data(), 4, 1}, onull{nullptr, 4, 1};
  const attnpool::pool_params p{1.0};
  expect_invalid([&] { attnpool::pool(null4, ok, ok, o4, p, cpu()); }, {"queries.data is null"});
  expect_invalid([&] { attnpool::pool(ok, null4, ok, o4, p, cpu()); }, {"keys.data is null"});
  expect_invalid([&] { attnpool::pool(ok, ok, null4, o4, p, cpu()); }, {"values.data is null"});
  expect_invalid([&] { attnpool::pool(ok, ok, ok, onull, p, cpu()); }, {"out.data is null"});
  expect_invalid([&] { attnpool::attention_weights(ok, null4, mutable_view{out.data(), 4, 4}, p,
                                                   cpu()); },
                 {"keys.data is null"});
  expect_invalid([&] { attnpool::average_pool(null4, o4, cpu()); }, {"values.data is null"});
  const std::size_t off[] = {0, 4};
  expect_invalid([&] { attnpool::pool_batched(ok, ok, null4, o4, off, off, p, cpu()); },
                 {"values.data is null"});
  // pool_partial allocated its n x dv states before validating: bad_alloc, not a named error.
  expect_invalid([&] { (void)attnpool::pool_partial(const_view{nul, kHuge, 1}, ok, ok, p, cpu()); },
                 {"pool_partial", "queries.data is null"});
  const auto st = attnpool::pool_partial(ok, ok, ok, p, cpu());
  expect_invalid([&] { attnpool::merge_partials(std::span(&st, 1), onull, p); },
                 {"out.data is null"});
  // A null dout was reported as "out".
  expect_invalid([&] { attnpool::pool_backward(ok, ok, ok, null4, {}, p, cpu()); },
                 {"dout.data is null"});
  expect_invalid([&] { (void)attnpool::loo_cv_error(null4, ok, std::vector<double>{1.0}, cpu()); },
                 {"x.data is null"});
  expect_invalid([&] { (void)attnpool::select_bandwidth(null4, ok, {}, cpu()); },
                 {"select_bandwidth", "x.data is null"});
  expect_invalid([&] { (void)attnpool::train_parametric(ok, null4, {}, cpu()); },
                 {"train_parametric", "y.data is null"});
  for (float x : out) EXPECT_EQ(x, kSentinel);
}

TEST(Reliability, OverflowingSizesAreNamed) {
  std::vector<float> a(64, 0.5f), out(64, kSentinel);
  const const_view ok{a.data(), 4, 1};
  const attnpool::pool_params p{1.0};
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  // A "negative" size (a wrapped -1) and an extent that overflows size_t.
  expect_invalid([&] { attnpool::pool(const_view{a.data(), max, 1}, ok, ok,
                                      mutable_view{out.data(), max, 1}, p, cpu()); },
                 {"overflows size_t"});
  expect_invalid([&] { attnpool::pool(ok, const_view{a.data(), 4, 1, max / 2}, ok,
                                      mutable_view{out.data(), 4, 1}, p, cpu()); },
                 {"keys", "overflows size_t"});
  expect_invalid([&] { (void)attnpool::pool_partial(const_view{a.data(), max / 2, 1, max / 2},
                                                    ok, ok, p, cpu()); },
                 {"pool_partial", "overflows size_t"});
  // select_bandwidth sized its grid before checking it: length_error.
  attnpool::bandwidth_search s;
  s.grid_size = max;
  expect_invalid([&] { (void)attnpool::select_bandwidth(ok, ok, s, cpu()); }, {"grid_size"});
}

// ---- 2. No silent inf for finite inputs near float32's range --------------------------------

TEST(Reliability, TwoKeysNearFloatMaxPoolFinite) {
  const std::vector<float> q = {0.0f}, k = {0.0f, 0.25f}, v = {3e38f, 3e38f};
  for (backend b : {backend::cpu, backend::reference}) {
    const auto out = attnpool::pool(q, k, v, attnpool::pool_params{1.0},
                                    attnpool::test::opts_for(b));
    ASSERT_TRUE(std::isfinite(out[0])) << attnpool::to_string(b) << " gave " << out[0];
    EXPECT_FLOAT_EQ(out[0], 3e38f);
  }
}

TEST(Reliability, ManyLargeValuesAtWideBandwidthPoolFinite) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const std::size_t m = 100000;
  std::vector<float> q = {0.5f}, k(m), v(m, 1e34f);
  for (float& x : k) x = unit(rng);
  const auto out = attnpool::pool(q, k, v, attnpool::pool_params{100.0}, cpu());
  ASSERT_TRUE(std::isfinite(out[0])) << out[0];
  // Equal values: out is 1e34 up to the rounding of two sums of 1e5 weights (1.1e-5 relative in
  // the sanitizer build, whose sums are not vectorised).
  EXPECT_NEAR(out[0], 1e34, 1e34 * 1e-4);
}

TEST(Reliability, SinglePassTileSlackDoesNotOverflow) {
  // 1024 far keys fill the first tile; 1024 keys 15.9 log2 units closer follow, inside the
  // single-pass tile's slack, so each weighs ~2^15.9 against the running reference.
  const std::size_t m = 2048;
  std::vector<float> q = {0.0f}, k(m), v(m, 1e31f);
  for (std::size_t j = 0; j < m; ++j) k[j] = j < 1024 ? 4.69f : 0.0f;
  const auto out = attnpool::pool(q, k, v, attnpool::pool_params{1.0}, cpu());
  ASSERT_TRUE(std::isfinite(out[0])) << out[0];
  EXPECT_NEAR(out[0], 1e31, 1e31 * 1e-5);
}

TEST(Reliability, BatchedAndShardedLargeValuesStayFinite) {
  const std::vector<float> q = {0.0f, 1.0f}, k = {0.0f, 0.25f, 1.0f, 1.5f};
  const std::vector<float> v = {3e38f, 3e38f, -3e38f, -3e38f};
  std::vector<float> out(2, kSentinel);
  const std::size_t qoff[] = {0, 1, 2}, koff[] = {0, 2, 4};
  attnpool::pool_batched(const_view{q.data(), 2, 1}, const_view{k.data(), 4, 1},
                         const_view{v.data(), 4, 1}, mutable_view{out.data(), 2, 1}, qoff, koff,
                         {}, cpu());
  EXPECT_FLOAT_EQ(out[0], 3e38f);
  EXPECT_FLOAT_EQ(out[1], -3e38f);
  // Two shards of one key each: each accumulator is finite, their float32 sum is not.
  const const_view q0{q.data(), 1, 1};
  std::vector<attnpool::partial_states> shards;
  shards.push_back(attnpool::pool_partial(q0, const_view{k.data(), 1, 1},
                                          const_view{v.data(), 1, 1}, {}, cpu()));
  shards.push_back(attnpool::pool_partial(q0, const_view{k.data() + 1, 1, 1},
                                          const_view{v.data() + 1, 1, 1}, {}, cpu()));
  attnpool::merge_partials(shards, mutable_view{out.data(), 1, 1});
  EXPECT_FLOAT_EQ(out[0], 3e38f);
  // One shard whose accumulator itself exceeds float32 (6e38): its reference moves instead.
  const auto both = attnpool::pool_partial(q0, const_view{k.data(), 2, 1},
                                           const_view{v.data(), 2, 1}, {}, cpu());
  ASSERT_TRUE(std::isfinite(both.acc[0]) && std::isfinite(both.sum[0]));
  attnpool::merge_partials(std::span(&both, 1), mutable_view{out.data(), 1, 1});
  EXPECT_FLOAT_EQ(out[0], 3e38f);
}

TEST(Reliability, LeaveOneOutErrorOfLargeTargetsIsFinite) {
  const std::vector<float> x = {0.0f, 0.5f, 1.0f, 1.5f}, y = {3e38f, 3e38f, 3e38f, 2e38f};
  const const_view xv{x.data(), 4, 1}, yv{y.data(), 4, 1};
  const std::vector<double> hs = {0.5, 2.0};
  const auto want = attnpool::loo_cv_error(xv, yv, hs, attnpool::test::opts_for(backend::reference));
  const auto got = attnpool::loo_cv_error(xv, yv, hs, cpu());
  for (std::size_t i = 0; i < hs.size(); ++i) {
    ASSERT_TRUE(std::isfinite(want[i]));
    ASSERT_TRUE(std::isfinite(got[i])) << "h = " << hs[i];
    EXPECT_NEAR(got[i], want[i], want[i] * 1e-4);
  }
  const auto sel = attnpool::select_bandwidth(xv, yv, {}, cpu());
  EXPECT_TRUE(std::isfinite(sel.cv_error) && std::isfinite(sel.bandwidth));
  const auto fit = attnpool::train_parametric(xv, yv, {}, cpu());
  EXPECT_TRUE(std::isfinite(fit.final_loss) && std::isfinite(fit.w[0])) << fit.final_loss;
}

TEST(Reliability, OrdinaryDataAreBitwiseUnchangedByTheGuard) {
  // The guard scales only values near float32's range; a power of two keeps results exact.
  const auto p = attnpool::test::make_problem(33, 700, 1, 1, attnpool::test::fresh_seed());
  std::vector<float> v2(p.v);
  for (float& x : v2) x *= 0x1p100f;  // large, but far from needing a scale
  std::vector<float> a(33), b(33);
  attnpool::pool(p.queries(), p.keys(), p.values(), mutable_view{a.data(), 33, 1}, {0.3}, cpu());
  attnpool::pool(p.queries(), p.keys(), const_view{v2.data(), 700, 1, 2},
                 mutable_view{b.data(), 33, 1}, {0.3}, cpu());
  for (std::size_t i = 0; i < 33; ++i) EXPECT_EQ(a[i] * 0x1p100f, b[i]) << i;
  // Near the range the scaled result is exactly the unscaled one times the same power of two.
  std::vector<float> v3(p.v);
  for (float& x : v3) x *= 0x1p127f;
  attnpool::pool(p.queries(), p.keys(), const_view{v3.data(), 700, 1, 2},
                 mutable_view{b.data(), 33, 1}, {0.3}, cpu());
  for (std::size_t i = 0; i < 33; ++i) EXPECT_EQ(a[i] * 0x1p127f, b[i]) << i;
}

// The device-pointer API cannot scale values it does not hold: its scan refuses what could
// overflow (checked here on the host, where the rule lives; tests/cuda run the scan).
TEST(Reliability, DeviceValueHeadroomRefusesWhatItCannotScale) {
  const double limit = std::ldexp(static_cast<double>(std::numeric_limits<float>::max()), -18);
  const std::size_t keys = 1024;
  const float at_limit = static_cast<float>(limit / keys);  // keys * max|v| == the limit: exact
  EXPECT_NO_THROW(attnpool::detail::check_value_headroom("cuda::pool", at_limit, keys));
  EXPECT_NO_THROW(attnpool::detail::check_value_headroom("cuda::pool", 1e30f, 1));
  EXPECT_NO_THROW(attnpool::detail::check_value_headroom("cuda::pool", 3e38f, 0));
  expect_invalid([&] { attnpool::detail::check_value_headroom("cuda::pool", 2 * at_limit, keys); },
                 {"cuda::pool: values up to", " over 1024 keys", "FLT_MAX / 2^18"});
  expect_invalid([&] { attnpool::detail::check_value_headroom("cuda::pool", 3e38f, 2); },
                 {"values up to 3.00000001e+38 over 2 keys"});
}

// ---- 3. Output untouched on error ------------------------------------------------------------

TEST(Reliability, EmptySupportRowLeavesOutputUntouched) {
  // Query 1 is far from every key: no key inside the epanechnikov kernel's support.
  const std::vector<float> q = {0.0f, 100.0f, 0.1f}, k = {0.0f, 0.2f}, v = {1.0f, 2.0f};
  attnpool::pool_params p{0.5, kernel::epanechnikov};
  for (backend b : {backend::cpu, backend::reference}) {
    SCOPED_TRACE(attnpool::to_string(b));
    const auto o = attnpool::test::opts_for(b);
    std::vector<float> out(3, kSentinel), w(6, kSentinel);
    expect_invalid([&] { attnpool::pool(const_view{q.data(), 3, 1}, const_view{k.data(), 2, 1},
                                        const_view{v.data(), 2, 1},
                                        mutable_view{out.data(), 3, 1}, p, o); },
                   {"query row 1"});
    expect_invalid([&] { attnpool::attention_weights(const_view{q.data(), 3, 1},
                                                     const_view{k.data(), 2, 1},
                                                     mutable_view{w.data(), 3, 2}, p, o); },
                   {"query row 1"});
    const std::size_t qoff[] = {0, 3}, koff[] = {0, 2};
    expect_invalid([&] { attnpool::pool_batched(const_view{q.data(), 3, 1},
                                                const_view{k.data(), 2, 1},
                                                const_view{v.data(), 2, 1},
                                                mutable_view{out.data(), 3, 1}, qoff, koff, p,
                                                o); },
                   {"query row 1"});
    for (float x : out) EXPECT_EQ(x, kSentinel);
    for (float x : w) EXPECT_EQ(x, kSentinel);
  }
}

// ---- 4. One bandwidth limit, derived from float32 --------------------------------------------

TEST(Reliability, OneBandwidthLimitForScalarAndAnisotropic) {
  static_assert(attnpool::kMinBandwidth == 0x1p-63);
  // 1/h^2 at the limit is a finite float32; just below it the anisotropic weight overflowed.
  EXPECT_TRUE(std::isfinite(static_cast<float>(1.0 / (attnpool::kMinBandwidth *
                                                       attnpool::kMinBandwidth))));
  const std::vector<float> q = {0.0f, 0.0f}, k = {0.0f, 0.0f, 1e-19f, 0.0f}, v = {1.0f, 2.0f};
  std::vector<float> out(1, kSentinel);
  auto run = [&](const attnpool::pool_params& p) {
    attnpool::pool(const_view{q.data(), 1, 2}, const_view{k.data(), 2, 2},
                   const_view{v.data(), 2, 1}, mutable_view{out.data(), 1, 1}, p, cpu());
  };
  const std::vector<double> aniso = {5e-20, 1.0};
  attnpool::pool_params pa{1.0};
  pa.bandwidths = aniso;
  expect_invalid([&] { run(pa); }, {"pool: bandwidths[0] 5e-20 is too small", "kMinBandwidth = 2^-63"});
  expect_invalid([&] { run(attnpool::pool_params{5e-20}); },
                 {"pool: bandwidth 5e-20 is too small", "kMinBandwidth = 2^-63"});
  expect_invalid([] { attnpool::check_bandwidth(5e-20, "--bandwidth"); },
                 {"--bandwidth 5e-20 is too small", "kMinBandwidth = 2^-63"});
  EXPECT_EQ(out[0], kSentinel);
  // At the limit both forms are accepted and finite.
  const std::vector<double> at = {attnpool::kMinBandwidth, 1.0};
  pa.bandwidths = at;
  run(pa);
  EXPECT_TRUE(std::isfinite(out[0])) << out[0];
  run(attnpool::pool_params{attnpool::kMinBandwidth});
  EXPECT_TRUE(std::isfinite(out[0])) << out[0];
  EXPECT_NO_THROW(attnpool::check_bandwidth(attnpool::kMinBandwidth));
}

// ---- 5. Overlapping host buffers -------------------------------------------------------------

TEST(Reliability, OverlappingBuffersAreRefused) {
  // values: 4 x 2 at buf[0, 8); out: 4 x 2 starting at buf[7]: one element shared.
  std::vector<float> buf(32, 0.5f);
  const std::vector<float> q = {0.0f, 1.0f, 2.0f, 3.0f};
  const const_view qv{q.data(), 4, 1}, kv{q.data(), 4, 1}, vv{buf.data(), 4, 2};
  expect_invalid([&] { attnpool::pool(qv, kv, vv, mutable_view{buf.data() + 7, 4, 2}, {}, cpu()); },
                 {"out and values overlap"});
  // Exact aliasing (in place) is refused too.
  expect_invalid([&] { attnpool::pool(qv, kv, vv, mutable_view{buf.data(), 4, 2}, {}, cpu()); },
                 {"out and values overlap"});
  std::vector<float> qk(16, 0.25f);
  expect_invalid([&] { attnpool::attention_weights(const_view{qk.data(), 4, 1},
                                                   const_view{qk.data() + 4, 4, 1},
                                                   mutable_view{qk.data() + 6, 4, 4}, {},
                                                   cpu()); },
                 {"weights and keys overlap"});
  expect_invalid([&] { attnpool::average_pool(vv, mutable_view{buf.data() + 1, 2, 2}, cpu()); },
                 {"out and values overlap"});
  std::vector<float> dout(8, 1.0f);
  attnpool::pool_gradients g;
  g.values = mutable_view{buf.data(), 4, 2};
  expect_invalid([&] { attnpool::pool_backward(qv, kv, vv, const_view{dout.data(), 4, 2}, g, {},
                                               cpu()); },
                 {"grads.values and values overlap"});
  // Column blocks of one matrix (one leading dimension) share no element: accepted.
  std::vector<float> mat(12, 0.0f);
  for (std::size_t j = 0; j < 4; ++j) mat[j * 3] = static_cast<float>(j);
  std::vector<float> alone(4);
  attnpool::pool(qv, kv, const_view{mat.data(), 4, 1, 3}, mutable_view{alone.data(), 4, 1}, {},
                 cpu());
  attnpool::pool(qv, kv, const_view{mat.data(), 4, 1, 3}, mutable_view{mat.data() + 1, 4, 1, 3},
                 {}, cpu());
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(mat[i * 3 + 1], alone[i]);
}

// ---- 6. Threads ------------------------------------------------------------------------------

#if defined(__SANITIZE_ADDRESS__)
#define ATTNPOOL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTNPOOL_TEST_ASAN 1
#endif
#endif

#ifndef ATTNPOOL_TEST_ASAN
// Address space now in use (bytes), from /proc/self/statm.
std::size_t address_space_in_use() {
  unsigned long pages = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// In a forked child under an address-space limit of what is in use plus `spare` bytes: runs
// pool with `threads` on a problem large enough for 64 threads and exits 0 on success, 1 on
// attnpool::error naming the thread, 2 on std::system_error, 3 on anything else.
[[noreturn]] void pool_under_limit(std::size_t spare, unsigned threads) {
  const auto p = attnpool::test::make_problem(4096, 4096, 1, 1, 7);
  std::vector<float> out(4096);
  const rlimit lim{address_space_in_use() + spare, RLIM_INFINITY};
  setrlimit(RLIMIT_AS, &lim);
  int code = 3;
  try {
    attnpool::pool(p.queries(), p.keys(), p.values(), mutable_view{out.data(), 4096, 1}, {},
                   attnpool::test::opts_for(backend::cpu, threads));
    code = 0;
  } catch (const attnpool::error& e) {
    code = std::string(e.what()).find("worker thread") != std::string::npos ? 1 : 3;
  } catch (const std::system_error&) {
    code = 2;
  } catch (...) {
  }
  _exit(code);
}
#endif

TEST(Reliability, ThreadsAreClampedToTheHardware) {
#ifdef ATTNPOOL_TEST_ASAN
  GTEST_SKIP() << "address-space limits and AddressSanitizer's shadow memory do not mix";
#else
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw == 0 || hw > 16) GTEST_SKIP() << "needs 1 to 16 hardware threads, found " << hw;
  // A fresh process (threadsafe style re-executes the test): a forked one would reuse the thread
  // stacks that glibc cached for the earlier tests' threads, which need no new address space.
  // Room for the hardware's thread stacks (8 MiB each) and some; 64 threads would need 504 MiB.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(pool_under_limit((std::size_t{hw} * 8 + 64) << 20, 64), testing::ExitedWithCode(0),
              "");
  // Unclamped results equal single-threaded ones bitwise.
  const auto p = attnpool::test::make_problem(300, 5000, 2, 2, attnpool::test::fresh_seed());
  std::vector<float> a(600), b(600);
  attnpool::pool(p.queries(), p.keys(), p.values(), mutable_view{a.data(), 300, 2}, {0.2},
                 attnpool::test::opts_for(backend::cpu, 1));
  attnpool::pool(p.queries(), p.keys(), p.values(), mutable_view{b.data(), 300, 2}, {0.2},
                 attnpool::test::opts_for(backend::cpu, 100000));
  EXPECT_EQ(a, b);
#endif
}

TEST(Reliability, ThreadCreationFailureIsAnAttnpoolError) {
#ifdef ATTNPOOL_TEST_ASAN
  GTEST_SKIP() << "address-space limits and AddressSanitizer's shadow memory do not mix";
#else
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs 2 hardware threads";
  // 2 MiB spare: no 8 MiB thread stack fits.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(pool_under_limit(std::size_t{2} << 20, 2), testing::ExitedWithCode(1), "");
#endif
}

// ---- 7. The property: never non-finite where the fp64 answer is finite -----------------------

// A random call: magnitudes of values up to float32's range, coordinates up to what the scores
// allow, random kernels and bandwidths.
struct random_call {
  std::size_t n, m, d, dv;
  std::vector<float> q, k, v;
  attnpool::pool_params params;
  std::vector<double> hs;

  explicit random_call(std::mt19937_64& rng, bool gaussian_only) {
    auto pick = [&](std::size_t lo, std::size_t hi) {
      return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
    };
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    n = pick(1, 9);
    m = pick(0, 3) == 0 ? pick(1025, 2600) : pick(2, 40);  // sometimes past one CPU tile
    d = pick(1, 3);
    dv = pick(1, 3);
    const kernel kernels[] = {kernel::gaussian, kernel::laplacian, kernel::epanechnikov,
                              kernel::boxcar, kernel::tricube};
    params.kernel = gaussian_only ? kernel::gaussian : kernels[pick(0, 4)];
    params.empty = attnpool::empty_support::nan;
    params.bandwidth = std::exp(std::log(1e-2) + unit(rng) * std::log(1e4));
    if (!gaussian_only && pick(0, 3) == 0) {
      hs.resize(d);
      for (double& h : hs) h = std::exp(std::log(1e-2) + unit(rng) * std::log(1e4));
      params.bandwidths = hs;
    }
    const double coord = std::pow(10.0, unit(rng) * 3.0 - 1.0);  // 0.1 to 100
    const double mag = std::pow(10.0, unit(rng) * 38.53);        // 1 to FLT_MAX
    q.resize(n * d);
    k.resize(m * d);
    v.resize(m * dv);
    for (float& x : q) x = static_cast<float>(coord * unit(rng));
    for (float& x : k) x = static_cast<float>(coord * unit(rng));
    for (float& x : v) {
      const double s = unit(rng) < 0.8 ? 1.0 : -1.0;
      x = static_cast<float>(std::min<double>(kFltMax, mag * (0.5 + 0.5 * unit(rng))) * s);
    }
  }
  const_view qv() const { return {q.data(), n, d}; }
  const_view kv() const { return {k.data(), m, d}; }
  const_view vv() const { return {v.data(), m, dv}; }
  std::string what(std::uint64_t seed, int trial) const {
    return "seed " + std::to_string(seed) + " trial " + std::to_string(trial) + ": n=" +
           std::to_string(n) + " m=" + std::to_string(m) + " d=" + std::to_string(d) +
           " dv=" + std::to_string(dv) + " kernel=" + attnpool::to_string(params.kernel) +
           " h=" + std::to_string(params.bandwidth) +
           (params.bandwidths.empty() ? "" : " anisotropic") + " |v|~" + std::to_string(v[0]);
  }
};

// Where the oracle is finite (and within float32's range), `got` must be finite.
void expect_finite_where(const std::vector<double>& want, const float* got, std::size_t count,
                         const std::string& what) {
  for (std::size_t i = 0; i < count; ++i) {
    if (std::isfinite(want[i]) && std::fabs(want[i]) <= kFltMax) {
      ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " is " << got[i]
                                         << ", the fp64 answer " << want[i];
    }
  }
}

void property_run(const attnpool::options& opts) {
  const std::uint64_t seed = attnpool::test::fresh_seed();
  std::printf("seed %llu (replay with ATTNPOOL_TEST_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const attnpool::options ref = attnpool::test::opts_for(backend::reference);
  // About 0.1 s. Against an engine without the overflow guard, 60 draws found a non-finite
  // output for 16 seeds in 20, and 200 for 20 in 20.
  constexpr int kPoolTrials = 200, kLearnTrials = 24;
  int pooled = 0, learned = 0;
  for (int trial = 0; trial < kPoolTrials; ++trial) {
    const random_call c(rng, false);
    const std::string what = c.what(seed, trial);
    SCOPED_TRACE(what);
    const auto want = attnpool::reference::pool(c.qv(), c.kv(), c.vv(), c.params);
    std::vector<float> out(c.n * c.dv);
    try {
      attnpool::pool(c.qv(), c.kv(), c.vv(), mutable_view{out.data(), c.n, c.dv}, c.params, opts);
    } catch (const attnpool::invalid_argument&) {
      continue;  // refused up front with a named error: allowed (scores out of range)
    }
    expect_finite_where(want.out, out.data(), out.size(), "pool " + what);
    ++pooled;
    // weights: each in [0, 1] where the oracle's row is not NaN.
    std::vector<float> w(c.n * c.m);
    attnpool::attention_weights(c.qv(), c.kv(), mutable_view{w.data(), c.n, c.m}, c.params, opts);
    expect_finite_where(attnpool::reference::weights(c.qv(), c.kv(), c.params), w.data(), w.size(),
                        "attention_weights " + what);
    std::vector<float> avg(c.n * c.dv);
    attnpool::average_pool(c.vv(), mutable_view{avg.data(), c.n, c.dv}, opts);
    EXPECT_TRUE(all_finite(avg)) << "average_pool " << what;
    // Batched: the same rows as one problem and as two halves of the keys' problem.
    const std::size_t qoff[] = {0, c.n}, koff[] = {0, c.m};
    std::fill(out.begin(), out.end(), 0.0f);
    attnpool::pool_batched(c.qv(), c.kv(), c.vv(), mutable_view{out.data(), c.n, c.dv}, qoff, koff,
                           c.params, opts);
    expect_finite_where(want.out, out.data(), out.size(), "pool_batched " + what);
    if (opts.backend == backend::cpu || opts.backend == backend::cuda_fused) {
      const std::size_t half = c.m / 2;
      std::vector<attnpool::partial_states> st;
      st.push_back(attnpool::pool_partial(c.qv(), rows_of(c.kv(), 0, half),
                                          rows_of(c.vv(), 0, half), c.params, opts));
      st.push_back(attnpool::pool_partial(c.qv(), rows_of(c.kv(), half, c.m),
                                          rows_of(c.vv(), half, c.m), c.params, opts));
      std::fill(out.begin(), out.end(), 0.0f);
      attnpool::merge_partials(st, mutable_view{out.data(), c.n, c.dv}, c.params);
      expect_finite_where(want.out, out.data(), out.size(), "pool_partial + merge " + what);
    }
  }
  // The learning API (Gaussian, isotropic): the reference backend's answer is the oracle.
  for (int trial = 0; trial < kLearnTrials; ++trial) {
    random_call c(rng, true);
    const std::size_t n = std::min<std::size_t>(c.m, 24);
    const const_view x{c.k.data(), n, c.d}, y{c.v.data(), n, c.dv};
    const std::string what = c.what(seed, kPoolTrials + trial);
    SCOPED_TRACE(what);
    const std::vector<double> hs = {c.params.bandwidth, c.params.bandwidth * 3};
    std::vector<double> want_cv, got_cv;
    try {
      want_cv = attnpool::loo_cv_error(x, y, hs, ref);
      got_cv = attnpool::loo_cv_error(x, y, hs, opts);
    } catch (const attnpool::invalid_argument&) {
      continue;
    }
    ++learned;
    for (std::size_t i = 0; i < hs.size(); ++i) {
      if (std::isfinite(want_cv[i])) {
        EXPECT_TRUE(std::isfinite(got_cv[i])) << "loo_cv_error";
      }
    }
    attnpool::bandwidth_search s;
    s.grid_size = 8;
    const auto sel = attnpool::select_bandwidth(x, y, s, opts);
    EXPECT_TRUE(std::isfinite(sel.bandwidth) && std::isfinite(sel.cv_error)) << "select_bandwidth";
    attnpool::train_options t;
    t.max_epochs = 5;
    const auto fit = attnpool::train_parametric(x, y, t, opts);
    EXPECT_TRUE(std::isfinite(fit.final_loss) && std::isfinite(fit.w[0])) << "train_parametric";
    // pool_backward with dout = 1: finite gradients where the reference backend's are.
    const std::vector<float> dout(n * c.dv, 1.0f);
    std::vector<float> dv_ref(n * c.dv), dv_got(n * c.dv), dq_ref(n * c.d), dq_got(n * c.d);
    attnpool::pool_gradients gr, gg;
    gr.values = mutable_view{dv_ref.data(), n, c.dv};
    gg.values = mutable_view{dv_got.data(), n, c.dv};
    gr.queries = mutable_view{dq_ref.data(), n, c.d};
    gg.queries = mutable_view{dq_got.data(), n, c.d};
    const attnpool::pool_params p{c.params.bandwidth};
    attnpool::pool_backward(x, x, y, const_view{dout.data(), n, c.dv}, gr, p, ref);
    attnpool::pool_backward(x, x, y, const_view{dout.data(), n, c.dv}, gg, p, opts);
    const std::vector<double> dv_want(dv_ref.begin(), dv_ref.end());
    expect_finite_where(dv_want, dv_got.data(), dv_got.size(), "pool_backward dv " + what);
    const std::vector<double> dq_want(dq_ref.begin(), dq_ref.end());
    expect_finite_where(dq_want, dq_got.data(), dq_got.size(), "pool_backward dq " + what);
  }
  std::printf("%d of %d pooling calls and %d of %d learning calls accepted\n", pooled,
              kPoolTrials, learned, kLearnTrials);
  // Most draws must reach the engines, or the property says nothing.
  EXPECT_GE(pooled, kPoolTrials / 2);
  EXPECT_GE(learned, kLearnTrials / 2);
}

TEST(ReliabilityProperty, CpuNeverNonFiniteWhereTheAnswerIsFinite) {
  property_run(attnpool::test::opts_for(backend::cpu));
}

TEST(ReliabilityProperty, GpuNeverNonFiniteWhereTheAnswerIsFinite) {
  if (!attnpool::cuda_available()) GTEST_SKIP() << "no CUDA device";
  property_run(attnpool::test::opts_for(backend::cuda_fused));
}

}  // namespace
