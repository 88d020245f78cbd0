/// \file
/// The maths of attention pooling, written once. The CPU engine and the CUDA kernels both use
/// these functions, so the CPU tests exercise the numerics the GPU runs. The fp64 reference
/// (src/reference.cpp) deliberately does not: it is the independent oracle.
///
/// Everything here works in the log2 domain: a score s2 = log2(e) * s, so that every key costs
/// one exp2 (a single MUFU.EX2 on NVIDIA GPUs) and no extra multiply.
#pragma once

#include <attnpool/detail/host_device.hpp>

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

  ATTNPOOL_HD float operator()(float squared_dist) const { return neg_scale * squared_dist; }
};

/// log2(e) / (2 h^2), computed in double and rounded once. Callers validate h beforehand.
inline double gaussian_log2_scale(double bandwidth) {
  return 1.4426950408889634 / (2.0 * bandwidth * bandwidth);
}

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
  ATTNPOOL_HD rescale update(float s) {
    const float new_max = s > max ? s : max;
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

  /// The normaliser that turns the accumulator into the pooled output: out = acc * inv_sum().
  /// sum >= 1 whenever a key was seen (the maximum contributes 2^0), so this is finite.
  ATTNPOOL_HD float inv_sum() const { return 1.0f / sum; }
};

}  // namespace attnpool::detail
