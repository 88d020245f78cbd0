// Helpers of the learning tests (tests/learn/ and tests/cuda/test_cuda_learn.cpp): the book's
// training set, random dL/d(out) and valid_length counts derived from a problem's printed seed,
// and the gradient comparison against the fp64 oracle's error model.
#pragma once

#include <attnpool/types.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace attnpool::test {

/// dL/d(out), n x dv, uniform in [-1, 1), from the problem's seed.
inline std::vector<float> random_dout(std::size_t n, std::size_t dv, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0xd007u);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(n * dv);
  for (float& x : a) x = u(rng);
  return a;
}

/// valid_length counts in [1, m] from the problem's seed: row 0 sees every key and the last row
/// (n >= 2) key 0 only.
inline std::vector<std::size_t> random_lens(std::size_t n, std::size_t m, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x1e5u);
  std::vector<std::size_t> lens(n);
  for (auto& l : lens) l = 1 + rng() % m;
  if (n >= 1) lens[0] = m;
  if (n >= 2) lens[n - 1] = 1;
  return lens;
}

/// A float32 gradient (rows x cols, row stride cols + pad, pads NaN-poisoned) against the
/// oracle: |got - want| <= 1e-5 * scale + bound per element (reference::pool_backward's error
/// model), every value finite, every pad element still NaN. Reports the first five failures.
inline void expect_gradient_close(const char* what, const std::vector<float>& got, std::size_t rows,
                                  std::size_t cols, std::size_t pad,
                                  const std::vector<double>& want, const std::vector<double>& scale,
                                  const std::vector<double>& bound) {
  std::size_t failures = 0, pads = 0;
  const std::size_t ld = cols + pad;
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t c = 0; c < ld; ++c) {
      const float x = got[i * ld + c];
      if (c >= cols) {
        pads += std::isnan(x) ? 0 : 1;
        continue;
      }
      const std::size_t e = i * cols + c;
      const double tol = 1e-5 * scale[e] + bound[e] + 1e-30;
      const double err = std::fabs(static_cast<double>(x) - want[e]);
      if ((!std::isfinite(x) || err > tol) && ++failures <= 5)
        ADD_FAILURE() << what << "(" << i << ", " << c << ") = " << x << ", reference " << want[e]
                      << ", |err| " << err << " > tol " << tol;
    }
  }
  if (failures > 5) ADD_FAILURE() << what << ": " << failures << " elements out of tolerance";
  EXPECT_EQ(pads, 0u) << what << ": pad elements were written";
}

/// Data on which leave-one-out selection has no interior minimum, where a search must still
/// return a finite h > 0 on its grid: all x equal (every h predicts the others' mean), n = 2
/// (each point is predicted by the other alone), and pairs of equal x with different y.
struct degenerate_case {
  const char* name;
  std::vector<float> x, y;
};

inline std::vector<degenerate_case> degenerate_bandwidth_cases() {
  std::vector<degenerate_case> cases;
  degenerate_case same{"all equal", std::vector<float>(50, 3.0f), std::vector<float>(50)};
  for (std::size_t i = 0; i < same.y.size(); ++i) same.y[i] = static_cast<float>(i % 7);
  cases.push_back(std::move(same));
  cases.push_back({"n = 2", {0.0f, 1.0f}, {1.0f, -1.0f}});
  degenerate_case dup{"duplicates", {}, {}};
  for (int i = 0; i < 20; ++i) {
    dup.x.insert(dup.x.end(), {static_cast<float>(i), static_cast<float>(i)});
    dup.y.insert(dup.y.end(), {static_cast<float>(i % 3), static_cast<float>(i % 3) + 0.1f});
  }
  cases.push_back(std::move(dup));
  return cases;
}

/// The book's training set: n sorted x uniform on [0, 5), y = 2 sin x + x^0.8 + N(0, 0.5^2);
/// with d >= 2 further, irrelevant input columns uniform on [0, 5).
struct dataset {
  std::size_t n, d;
  std::vector<float> x, y;
  const_view xv() const { return {x.data(), n, d}; }
  const_view yv() const { return {y.data(), n, 1}; }
};

inline dataset book_data(std::size_t n, std::size_t d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 5.0f);
  std::normal_distribution<float> noise(0.0f, 0.5f);
  std::vector<float> x0(n);
  for (float& v : x0) v = u(rng);
  std::sort(x0.begin(), x0.end());
  dataset s{n, d, std::vector<float>(n * d), std::vector<float>(n)};
  for (std::size_t i = 0; i < n; ++i) {
    s.x[i * d] = x0[i];
    for (std::size_t c = 1; c < d; ++c) s.x[i * d + c] = u(rng);
    s.y[i] = 2.0f * std::sin(x0[i]) + std::pow(x0[i], 0.8f) + noise(rng);
  }
  return s;
}

/// The demo's and the notebook's training set: 100 x uniform on [0, 10) (or the given ones),
/// sorted, with y = x + sin x + N(0, 1).
inline dataset demo_data(std::uint64_t seed, const std::vector<float>* given_x = nullptr) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 10.0f);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> x0(given_x != nullptr ? given_x->size() : 100);
  if (given_x != nullptr) {
    x0 = *given_x;
  } else {
    for (float& v : x0) v = u(rng);
  }
  std::sort(x0.begin(), x0.end());
  dataset s{x0.size(), 1, x0, std::vector<float>(x0.size())};
  for (std::size_t i = 0; i < s.n; ++i) s.y[i] = x0[i] + std::sin(x0[i]) + noise(rng);
  return s;
}

}  // namespace attnpool::test
