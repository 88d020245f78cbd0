// Shared test helpers: fresh random problems with printed seeds, and the comparison against the
// fp64 oracle with tolerances derived from the float32 arithmetic (see tolerance_for()).
#pragma once

#include <attnpool/error.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>
#include <attnpool/types.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace attnpool::test {

/// A fresh seed per call, or ATTNPOOL_TEST_SEED to replay one. Always printed, so a failure
/// names the data it saw.
inline std::uint64_t fresh_seed() {
  if (const char* env = std::getenv("ATTNPOOL_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  static std::random_device rd;
  const std::uint64_t seed = (std::uint64_t{rd()} << 32) ^ rd();
  return seed;
}

/// Row-major float32 problem data with a padded leading dimension (ld = cols + pad), so that
/// every test also exercises leading dimensions.
struct problem {
  std::size_t n = 0, m = 0, d = 0, dv = 0, pad = 0;
  std::vector<float> q, k, v;
  std::uint64_t seed = 0;

  const_view queries() const { return {q.data(), n, d, d + pad}; }
  const_view keys() const { return {k.data(), m, d, d + pad}; }
  const_view values() const { return {v.data(), m, dv, dv + pad}; }
};

/// Queries and keys uniform in [0, 1)^d (keys shifted by key_offset in every coordinate),
/// values uniform in [-1, 1). Pad elements hold NaN: reading them would poison the result.
inline problem make_problem(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                            std::uint64_t seed, float key_offset = 0.0f, std::size_t pad = 1) {
  problem p{n, m, d, dv, pad, {}, {}, {}, seed};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f), sym(-1.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto fill = [&](std::vector<float>& a, std::size_t rows, std::size_t cols, auto&& gen) {
    a.assign(rows * (cols + pad), nan);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) a[i * (cols + pad) + j] = gen();
  };
  fill(p.q, n, d, [&] { return unit(rng); });
  fill(p.k, m, d, [&] { return unit(rng) + key_offset; });
  fill(p.v, m, dv, [&] { return sym(rng); });
  return p;
}

/// The (n_b, m_b) of a mixed batch: every pair from {0, 1, 7, 129, largest}^2, with m_b = 0 only
/// where n_b = 0, tiny and large interleaved (every other one taken from the back).
inline std::vector<std::pair<std::size_t, std::size_t>> mixed_problem_sizes(std::size_t largest) {
  const std::size_t s[] = {0, 1, 7, 129, largest};
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (std::size_t n : s)
    for (std::size_t m : s)
      if (m > 0 || n == 0) out.emplace_back(n, m);
  for (std::size_t i = 1; i < out.size(); i += 2) std::swap(out[i], out[out.size() - i]);
  return out;
}

/// Human-readable description of a case, for SCOPED_TRACE.
inline std::string describe(const problem& p, double h) {
  return "n=" + std::to_string(p.n) + " m=" + std::to_string(p.m) + " d=" + std::to_string(p.d) +
         " dv=" + std::to_string(p.dv) + " h=" + std::to_string(h) +
         " seed=" + std::to_string(p.seed) + " (replay with ATTNPOOL_TEST_SEED=" +
         std::to_string(p.seed) + ")";
}

/// The float32 error bound for one output element, from the fp64 oracle's per-element scales:
///   |out32 - out64| <= rtol * sum_j w_j |v_j|  +  score_bound
/// The first term is the rounding of the weights and the weighted sums (1e-5 relative, the
/// project's bar, ~100x the log2(m) * eps32 that tiled sums of m <= 2^20 terms lose). The
/// second is the effect of float32 score errors of at most (d + 4) eps32 |s_j| each
/// (reference::float32_score_error; reference::pooled says how the bound follows). For moderate
/// bandwidths it is negligible; for h = 1e-3 or keys 1e4 away it is what float32 scores can
/// honestly deliver. (`d` is accepted for the call sites' convenience; the oracle already used
/// it.)
inline double tolerance_for(const reference::pooled& ref, std::size_t idx, std::size_t /*d*/ = 0,
                            double rtol = 1e-5) {
  return rtol * ref.abs_scale[idx] + ref.score_bound[idx] + 1e-30;
}

/// Options for one backend (and a CPU thread count; 0 = all hardware threads).
inline options opts_for(backend b, unsigned threads = 0) {
  options o;
  o.backend = b;
  o.threads = threads;
  return o;
}

/// Names a backend-parameterised test instance after the backend ("cpu", "cuda_fused", ...).
inline std::string backend_name(const ::testing::TestParamInfo<backend>& info) {
  return attnpool::to_string(info.param);
}

/// Rounds the coordinates to multiples of 1/64: squared distances are then exact in float and
/// double alike, and with bandwidths like 0.3 (not a multiple of 1/64) no u^2 lies within 1e-3
/// of a compact kernel's edge, where float and double could disagree on whether a key is inside
/// (the boxcar's weight 1 against 0).
inline void snap_to_grid(problem& p) {
  for (std::vector<float>* a : {&p.q, &p.k})
    for (float& x : *a)
      if (std::isfinite(x)) x = std::round(x * 64.0f) / 64.0f;
}

/// Expects call() to throw attnpool::invalid_argument whose message holds every fragment; any other
/// exception (bad_alloc, length_error, ...) or none fails the test.
inline void expect_invalid(const std::function<void()>& call,
                           std::initializer_list<std::string> parts) {
  try {
    call();
    ADD_FAILURE() << "no exception";
  } catch (const invalid_argument& e) {
    for (const auto& f : parts)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
          << "message '" << e.what() << "' lacks '" << f << "'";
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not invalid_argument: " << e.what();
  }
}

/// Fills a buffer with NaN before a run: a backend that skips an element is caught.
inline void poison(std::vector<float>& a) {
  std::fill(a.begin(), a.end(), std::numeric_limits<float>::quiet_NaN());
}

/// Compares an n x dv output (ld = out_ld) with the fp64 oracle. Where the oracle's row is NaN
/// on purpose (empty_support::nan: no key in a compact kernel's support) the output must be NaN
/// too; everywhere else it must be finite and within tolerance_for().
/// Returns the largest error as a fraction of its tolerance (<= 1 passes), for reporting.
inline double expect_matches_reference(const problem& p, const pool_params& params,
                                       const float* out, std::size_t out_ld,
                                       const reference::pooled& ref) {
  double worst = 0.0;
  std::size_t failures = 0;
  for (std::size_t i = 0; i < p.n; ++i) {
    for (std::size_t c = 0; c < p.dv; ++c) {
      const std::size_t idx = i * p.dv + c;
      const float got = out[i * out_ld + c];
      const double want = ref.out[idx];
      if (std::isnan(want)) {
        if (!std::isnan(got) && ++failures <= 5)
          ADD_FAILURE() << "out(" << i << ", " << c << ") = " << got << ", want NaN (empty row)  ["
                        << describe(p, params.bandwidth) << "]";
        continue;
      }
      const double tol = tolerance_for(ref, idx, p.d);
      const double err = std::fabs(static_cast<double>(got) - want);
      const bool ok = std::isfinite(got) && err <= tol;
      worst = std::max(worst, std::isfinite(got) ? err / tol : INFINITY);
      if (!ok && ++failures <= 5) {
        ADD_FAILURE() << "out(" << i << ", " << c << ") = " << got << ", reference " << want
                      << ", |err| " << err << " > tol " << tol << "  [" << describe(p, params.bandwidth)
                      << "]";
      }
    }
  }
  if (failures > 5) ADD_FAILURE() << failures << " elements out of tolerance in total";
  return worst;
}

/// Runs attnpool::pool on backend b into a NaN-poisoned output padded to ld = dv + 2 (so a
/// skipped or out-of-row write is caught) and checks it against the fp64 oracle.
inline void check_pool_against_reference(const problem& p, const pool_params& params, backend b,
                                         unsigned threads = 0) {
  SCOPED_TRACE(describe(p, params.bandwidth) + " kernel=" + to_string(params.kernel) +
               " mask=" + to_string(params.mask) + " backend=" + to_string(b));
  const std::size_t ld = p.dv + 2;
  std::vector<float> out(p.n * ld);
  poison(out);
  pool(p.queries(), p.keys(), p.values(), {out.data(), p.n, p.dv, ld}, params,
       opts_for(b, threads));
  expect_matches_reference(p, params, out.data(), ld,
                           reference::pool(p.queries(), p.keys(), p.values(), params));
}

/// Tolerance of a float32 loo_cv_error(h) against the fp64 oracle's, for x = p.queries() and
/// y = p.values() (n = p.n rows): |cv32 - cv64| <= 1/(n dv) sum_ic (2 |y_ic - yhat_ic| tol_ic +
/// tol_ic^2) + 1e-6 cv64. Each leave-one-out prediction is within the forward engine's derived
/// tolerance tol_ic (tolerance_for); the last term is the float32 rounding of the n dv squared
/// errors' inputs and their sum in double.
inline double loo_cv_tolerance(const problem& p, double h) {
  pool_params params{h};
  params.mask = mask::leave_one_out;
  const auto ref = reference::pool(p.queries(), p.queries(), p.values(), params);
  double tol = 0.0, cv = 0.0;
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t c = 0; c < p.dv; ++c) {
      const std::size_t idx = i * p.dv + c;
      const double t = tolerance_for(ref, idx, p.d);
      const double e = std::fabs(double{p.values()(i, c)} - ref.out[idx]);
      tol += 2.0 * e * t + t * t;
      cv += e * e;
    }
  const double count = static_cast<double>(p.n * p.dv);
  return tol / count + 1e-6 * cv / count;
}

}  // namespace attnpool::test
