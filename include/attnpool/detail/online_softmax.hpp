/// \file
/// The maths of attention pooling, written once. The CPU engine and the CUDA kernels both use
/// these functions, so the CPU tests exercise the numerics the GPU runs. The fp64 reference
/// (src/reference.cpp) deliberately does not: it is the independent oracle.
///
/// Everything here works in the log2 domain: a score s2 = log2(e) * s, so that every key costs
/// one exp2 (a single MUFU.EX2 on NVIDIA GPUs) and no extra multiply.
#pragma once

#include <attnpool/detail/host_device.hpp>
#include <attnpool/types.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace attnpool::detail {

inline constexpr float kLog2e = 1.44269504088896340736f;

/// Scores below this (in log2 units, relative to the running maximum) flush to weight 0.
/// 2^-125 is far below the resolution of a sum that always contains the maximum's 1.0, and it
/// keeps exp2_poly's exponent arithmetic away from denormals.
inline constexpr float kExp2Floor = -125.0f;

ATTNPOOL_HD std::int32_t float_as_int(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(x);
#else
  std::int32_t i;
  std::memcpy(&i, &x, sizeof i);
  return i;
#endif
}

ATTNPOOL_HD float int_as_float(std::int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float x;
  std::memcpy(&x, &i, sizeof x);
  return x;
#endif
}

/// 2^x for x <= 127, written without branches or library calls so that compilers vectorise
/// loops over it (AVX2/AVX-512 on the host). Range reduction x = n + f with n = round(x) via the
/// 1.5 * 2^23 magic constant, f in [-0.5, 0.5]; then a degree-6 polynomial fitted to 2^f in
/// relative error (max 9.6e-8 in float arithmetic, measured over 2e5 points, about 1.6 ulp,
/// on par with the GPU's ex2.approx at 2^-22). Inputs below kExp2Floor return exactly 0.
ATTNPOOL_HD float exp2_poly(float x) {
  const float xc = x < kExp2Floor ? kExp2Floor : x;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc + kMagic;
  const std::int32_t n = float_as_int(t) - float_as_int(kMagic);
  const float f = xc - (t - kMagic);
  float p = 1.53458037e-04f;
  p = p * f + 1.33999309e-03f;
  p = p * f + 9.61848907e-03f;
  p = p * f + 5.55032864e-02f;
  p = p * f + 2.40226462e-01f;
  p = p * f + 6.93147182e-01f;
  p = p * f + 1.0f;
  // Adding n to the exponent field. Unsigned arithmetic: callers may evaluate a few lanes with
  // x > 128 that they then discard (the CPU engine's single-pass tiles), and those must not be
  // signed-overflow UB.
  const auto bits = static_cast<std::uint32_t>(float_as_int(p)) + (static_cast<std::uint32_t>(n) << 23);
  const float r = int_as_float(static_cast<std::int32_t>(bits));
  return x < kExp2Floor ? 0.0f : r;
}

/// 2^x, x <= 0: the hardware ex2.approx (flush-to-zero) on the device, exp2_poly on the host.
ATTNPOOL_HD float fast_exp2(float x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2_poly(x);
#endif
}

/// Squared Euclidean distance over a compile-time dimension.
template <int D>
ATTNPOOL_HD float squared_distance(const float* q, const float* k) {
  float acc = 0.0f;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int c = 0; c < D; ++c) {
    const float diff = q[c] - k[c];
    acc = diff * diff + acc;
  }
  return acc;
}

/// Squared Euclidean distance over a run-time dimension (the generic path).
ATTNPOOL_HD float squared_distance(const float* q, const float* k, int d) {
  float acc = 0.0f;
  for (int c = 0; c < d; ++c) {
    const float diff = q[c] - k[c];
    acc = diff * diff + acc;
  }
  return acc;
}

/// The Gaussian kernel's score in log2 units: s2 = -||q - k||^2 * log2(e) / (2 h^2).
/// The scale is folded once on the host (in double, see gaussian_log2_scale) so that each
/// pair costs one multiply on top of the distance.
struct gaussian_log2_score {
  float neg_scale;  ///< -log2(e) / (2 h^2), rounded once to float
  static constexpr bool kCompact = false;

  ATTNPOOL_HD float operator()(float squared_dist) const { return neg_scale * squared_dist; }
};

/// log2(e) / (2 h^2), computed in double and rounded once. Callers validate h beforehand.
inline double gaussian_log2_scale(double bandwidth) {
  return 1.4426950408889634 / (2.0 * bandwidth * bandwidth);
}

// ---- The kernel family ----------------------------------------------------------------------
// Every kernel is a log2-score functor of the squared distance r2 that the engine computed:
// ||q - k||^2 (isotropic), or sum_c (q_c - k_c)^2 / h_c^2 (anisotropic; then the functor is
// built with h = 1). Each is monotone non-increasing in r2, so the engines may take a chunk's
// maximum score as the score of its smallest distance. Compact kernels (kCompact) return -inf
// outside their support, which becomes weight exactly 0; the engines must then cope with a
// chunk, tile or whole row whose maximum is -inf (see online_softmax). Constants are folded
// once on the host, in double, by make_*_score / kernel_constant.

/// log2(x) for normal x > 0, written without branches or library calls so that the compact
/// kernels' tile loops vectorise on the host (std::log2 is a scalar call per key: 30x slower).
/// x = 2^e * f with f in [sqrt(1/2), sqrt(2)), then log2 f = (2 / ln 2) atanh(t) with
/// t = (f - 1) / (f + 1), |t| <= 0.172, by its odd series to t^9 (truncation < 2e-10 relative).
/// f - 1 is exact, so results near x = 1 keep their relative accuracy. Measured against the
/// fp64 log2 on every float in [2^-24, 1] (the compact kernels' range, 1 - u^2 >= 2^-24):
/// |error| <= 0.76 eps32 (1 + |log2 x|); tests/core/test_kernels.cpp holds it to 1 eps32. Other inputs (<= 0, inf, NaN, denormals) return garbage
/// without UB: callers select such lanes away.
ATTNPOOL_HD float log2_poly(float x) {
  const auto bits = static_cast<std::uint32_t>(float_as_int(x));
  // Exponent relative to f in [sqrt(1/2), sqrt(2)): offset the mantissa by 1 - sqrt(1/2) first.
  const std::uint32_t shifted = bits + (0x3f800000u - 0x3f3504f3u);
  const auto e = static_cast<std::int32_t>(shifted >> 23) - 127;
  const float f =
      int_as_float(static_cast<std::int32_t>((shifted & 0x007fffffu) + 0x3f3504f3u));
  const float t = (f - 1.0f) / (f + 1.0f);
  const float t2 = t * t;
  float p = 1.0f / 9.0f;
  p = p * t2 + 1.0f / 7.0f;
  p = p * t2 + 1.0f / 5.0f;
  p = p * t2 + 1.0f / 3.0f;
  p = p * t2 + 1.0f;
  constexpr float kTwoOverLn2 = 2.88539008177792681472f;  // 2 / ln 2
  return static_cast<float>(e) + (kTwoOverLn2 * t) * p;
}

/// log2 on the host and the device: log2_poly on the host (vectorises), the accurate log2f on
/// the device (the compact kernels are not the GPU fast path).
ATTNPOOL_HD float log2_hd(float x) {
#if defined(__CUDA_ARCH__)
  return ::log2f(x);
#else
  return log2_poly(x);
#endif
}

ATTNPOOL_HD float sqrt_hd(float x) {
#if defined(__CUDA_ARCH__)
  return ::sqrtf(x);
#else
  return std::sqrt(x);
#endif
}

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

/// Laplacian exp(-||q - k|| / h): s2 = -sqrt(r2) * log2(e) / h.
struct laplacian_log2_score {
  float neg_scale;  ///< -log2(e) / h, rounded once to float
  static constexpr bool kCompact = false;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    return neg_scale * sqrt_hd(squared_dist);
  }
};

/// Epanechnikov max(0, 1 - u^2), u^2 = r2 / h^2: s2 = log2(1 - u^2) for u^2 < 1, else -inf.
struct epanechnikov_log2_score {
  float inv_h2;  ///< 1 / h^2, rounded once to float
  static constexpr bool kCompact = true;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    const float u2 = squared_dist * inv_h2;
    return u2 < 1.0f ? log2_hd(1.0f - u2) : kNegInf;
  }
};

/// Boxcar 1 for u < 1, else 0: s2 = 0 inside the support, -inf outside.
struct boxcar_log2_score {
  float inv_h2;  ///< 1 / h^2, rounded once to float
  static constexpr bool kCompact = true;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    return squared_dist * inv_h2 < 1.0f ? 0.0f : kNegInf;
  }
};

/// Tricube (1 - u^3)^3 for u < 1, else 0: s2 = 3 log2(1 - u^3).
struct tricube_log2_score {
  float inv_h2;  ///< 1 / h^2, rounded once to float
  static constexpr bool kCompact = true;
  ATTNPOOL_HD float operator()(float squared_dist) const {
    const float u2 = squared_dist * inv_h2;
    if (!(u2 < 1.0f)) return kNegInf;
    return 3.0f * log2_hd(1.0f - u2 * sqrt_hd(u2));
  }
};

/// Squared distance with one weight per dimension, sum_c w_c (q_c - k_c)^2 with w_c = 1 / h_c^2
/// (the anisotropic bandwidth). The difference is taken on the unscaled inputs, exactly as the
/// isotropic path does, so far-away keys lose nothing to a prior rescaling of the coordinates.
ATTNPOOL_HD float weighted_squared_distance(const float* q, const float* k, const float* w, int d) {
  float acc = 0.0f;
  for (int c = 0; c < d; ++c) {
    const float diff = q[c] - k[c];
    acc = (w[c] * diff) * diff + acc;
  }
  return acc;
}

/// The float constant of a kernel's score functor for bandwidth h, computed in double and
/// rounded once: -log2(e)/(2h^2) (gaussian), -log2(e)/h (laplacian), 1/h^2 (compact kernels).
inline float kernel_constant(kernel k, double h) {
  switch (k) {
    case kernel::gaussian: return static_cast<float>(-gaussian_log2_scale(h));
    case kernel::laplacian: return static_cast<float>(-1.4426950408889634 / h);
    case kernel::epanechnikov:
    case kernel::boxcar:
    case kernel::tricube: break;
  }
  return static_cast<float>(1.0 / (h * h));
}

/// Calls f(score) with the score functor of kernel k built from kernel_constant(k, h): the one
/// run-time -> compile-time kernel switch of the host engines.
template <class F>
decltype(auto) with_kernel_score(kernel k, double h, F&& f) {
  const float c = kernel_constant(k, h);
  switch (k) {
    case kernel::laplacian: return f(laplacian_log2_score{c});
    case kernel::epanechnikov: return f(epanechnikov_log2_score{c});
    case kernel::boxcar: return f(boxcar_log2_score{c});
    case kernel::tricube: return f(tricube_log2_score{c});
    case kernel::gaussian: break;
  }
  return f(gaussian_log2_score{c});
}

/// Every kernel behind one run-time switch: what the GPU runs for the non-Gaussian kernels (one
/// extra instantiation set instead of one per kernel; the Gaussian keeps its own functor and
/// code). `constant` is kernel_constant(kind, h).
struct any_log2_score {
  kernel kind;
  float constant;
  static constexpr bool kCompact = true;  // may return -inf: the engines take the guarded path
  ATTNPOOL_HD float operator()(float squared_dist) const {
    switch (kind) {
      case kernel::laplacian: return laplacian_log2_score{constant}(squared_dist);
      case kernel::epanechnikov: return epanechnikov_log2_score{constant}(squared_dist);
      case kernel::boxcar: return boxcar_log2_score{constant}(squared_dist);
      case kernel::tricube: return tricube_log2_score{constant}(squared_dist);
      case kernel::gaussian: break;
    }
    return gaussian_log2_score{constant}(squared_dist);
  }
};

/// Factors that rescale two partial accumulators onto a common maximum.
struct rescale {
  float self;   ///< multiply the existing accumulator by this
  float other;  ///< multiply the incoming contribution by this
};

/// Running state of a streaming (max-rescaled) softmax in log2 units: the largest score seen,
/// and the sum of 2^(s - max) over the keys seen. The weighted value accumulator lives beside
/// it, sized by the caller (registers on the GPU, a row buffer on the CPU), and is rescaled
/// with the factors that update() and merge() return:
///   acc = acc * r.self + r.other * contribution.
/// Invariant: max == -inf iff no key has been seen, and then sum == 0.
struct online_softmax {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0.0f;

  /// Adds one key with log2 score s; the contribution to scale is that key's value row.
  /// A score of -inf (a masked key, or one outside a compact kernel's support) leaves the state
  /// unchanged, also while it is empty (where -inf - -inf would otherwise be NaN).
  ATTNPOOL_HD rescale update(float s) {
    const float new_max = s > max ? s : max;
    if (new_max == -std::numeric_limits<float>::infinity()) return {1.0f, 0.0f};  // still empty
    const rescale r{fast_exp2(max - new_max), fast_exp2(s - new_max)};
    sum = sum * r.self + r.other;
    max = new_max;
    return r;
  }

  /// Merges another partial state (over a disjoint set of keys). Associative and, up to
  /// rounding, commutative; an empty state is its identity. The contribution to scale is the
  /// other state's accumulator.
  ATTNPOOL_HD rescale merge(const online_softmax& o) {
    const float new_max = o.max > max ? o.max : max;
    if (new_max == -std::numeric_limits<float>::infinity()) return {1.0f, 0.0f};  // both empty
    const rescale r{fast_exp2(max - new_max), fast_exp2(o.max - new_max)};
    sum = sum * r.self + o.sum * r.other;
    max = new_max;
    return r;
  }

  /// Whether no key with a finite score was seen: a query with no key in a compact kernel's
  /// support. inv_sum() is then inf and acc * inv_sum() NaN; callers apply the empty-support
  /// policy (pool_params::empty) instead.
  /// (NaN inputs, which options.check_finite rejects, are not "empty": they stay NaN.)
  ATTNPOOL_HD bool empty() const { return max == -std::numeric_limits<float>::infinity(); }

  /// The normaliser that turns the accumulator into the pooled output: out = acc * inv_sum().
  /// sum >= 1 whenever a key with a finite score was seen (the maximum contributes 2^0), so
  /// this is finite unless empty().
  ATTNPOOL_HD float inv_sum() const { return 1.0f / sum; }
};

}  // namespace attnpool::detail
