/// \file
/// Fast float maths shared by the CPU engine and the CUDA kernels: bit casts, and exp2 / log2
/// written without branches or library calls so that host loops over them vectorise.
/// Everything works in the log2 domain: a score s2 = log2(e) * s, so that every key costs one
/// exp2 (a single MUFU.EX2 on NVIDIA GPUs) and no extra multiply.
#pragma once

#include <attnpool/detail/host_device.hpp>

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
  const auto bits =
      static_cast<std::uint32_t>(float_as_int(p)) + (static_cast<std::uint32_t>(n) << 23);
  const float r = int_as_float(static_cast<std::int32_t>(bits));
  return x < kExp2Floor ? 0.0f : r;
}

/// 2^x for x in [kExp2Floor, 128) only (no floor test), for loops whose callers have bounded x:
/// a degree-5 polynomial, 5 FMAs instead of exp2_poly's 6. The coefficients were fitted in
/// relative error with each one rounded to float before the next was refitted. Max relative
/// error 2.04e-7 (3.4 ulp; tests/core/test_cpu_forms.cpp, every float of [-0.5, -0.25) and
/// [0.25, 0.5) and a grid over [-125, 127]), against exp2_poly's 9.6e-8. A weight then carries
/// at most 2.04e-7 of relative error from the exponential: below the rounding of its own score
/// once |s| > 0.45 (u |s| ln 2), and far below the project's 1e-5 tolerance. The exponent insert is
/// bits(x + 1.5 * 2^23) << 23 = n << 23 (mod 2^32), since the magic constant's low 9 bits are 0.
ATTNPOOL_HD float exp2_poly5_unchecked(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  const float t = x + kMagic;
  const float f = x - (t - kMagic);
  float p = 1.32637599e-03f;
  p = p * f + 9.67190228e-03f;
  p = p * f + 5.55075109e-02f;
  p = p * f + 2.40222335e-01f;
  p = p * f + 6.93147004e-01f;
  p = p * f + 1.0f;
  const auto bits = static_cast<std::uint32_t>(float_as_int(p)) +
                    (static_cast<std::uint32_t>(float_as_int(t)) << 23);
  return int_as_float(static_cast<std::int32_t>(bits));
}

/// exp2_poly's contract (x <= 127; exactly 0 below kExp2Floor, -inf included) with
/// exp2_poly5_unchecked's polynomial. Lanes below the floor compute garbage without UB and are
/// selected away, which vectorises to one zero-masked integer add.
ATTNPOOL_HD float exp2_poly5(float x) {
  const float r = exp2_poly5_unchecked(x);
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

/// log2(x) for normal x > 0, written without branches or library calls so that the compact
/// kernels' tile loops vectorise on the host (std::log2 is a scalar call per key: 30x slower).
/// x = 2^e * f with f in [sqrt(1/2), sqrt(2)), then log2 f = (2 / ln 2) atanh(t) with
/// t = (f - 1) / (f + 1), |t| <= 0.172, by its odd series to t^9 (truncation < 2e-10 relative).
/// f - 1 is exact, so results near x = 1 keep their relative accuracy. Measured against the
/// fp64 log2 on every float in [2^-24, 1] (the compact kernels' range, 1 - u^2 >= 2^-24):
/// |error| <= 0.76 eps32 (1 + |log2 x|); tests/core/test_kernels.cpp holds it to 1 eps32. Other
/// inputs (<= 0, inf, NaN, denormals) return garbage without UB: callers select such lanes away.
ATTNPOOL_HD float log2_poly(float x) {
  const auto bits = static_cast<std::uint32_t>(float_as_int(x));
  // Exponent relative to f in [sqrt(1/2), sqrt(2)): offset the mantissa by 1 - sqrt(1/2) first.
  const std::uint32_t shifted = bits + (0x3f800000u - 0x3f3504f3u);
  const auto e = static_cast<std::int32_t>(shifted >> 23) - 127;
  const float f = int_as_float(static_cast<std::int32_t>((shifted & 0x007fffffu) + 0x3f3504f3u));
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

/// log2 accurate to the last bits on host and device alike (std::log2, log2f): for results that
/// other phases compare against, such as the backward pass's saved log-sum-exp.
ATTNPOOL_HD float log2_accurate(float x) {
#if defined(__CUDA_ARCH__)
  return log2f(x);
#else
  return std::log2(x);
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

}  // namespace attnpool::detail
