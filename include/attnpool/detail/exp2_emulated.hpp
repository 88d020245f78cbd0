/// \file
/// 2^x on the FMA pipe: FlashAttention-4's way past the MUFU.EX2 bound. An SM issues 16 MUFU
/// operations per clock but 128 FFMAs, so once the rest of a pair costs few enough
/// instructions, computing some of the exp2s with FFMAs instead of MUFU.EX2 lets both pipes
/// work (fused_traits::kExpandedEmulatedExp2 says how many per chunk of the expanded d = 1 kernel).
///
/// The method: range reduction x = n + f with n = round(x) and f in [-1/2, 1/2]; the Cody-Waite
/// split that exp needs (x ln 2 = n ln 2 + f, ln 2 in two parts) is not needed here because x is
/// already in log2 units, so f = x - n is exact (n is x's nearest integer, |x| <= 127). Then a
/// minimax polynomial for 2^f by Horner (FFMAs), and n added into the exponent bits of the
/// result (one integer shift-and-add). The polynomial is 1 + f (c1 + f (c2 + ...)): the constant
/// term is exactly 1, so 2^0 is exactly 1 as it is for the row's reference key (the sum >= 1
/// invariant of the online softmax), and the fit is of the relative error under that constraint.
///
/// Both the CPU tests (tests/core/test_exp2_emulated.cpp, exhaustive over the reduced range)
/// and the kernels compile this; host and device evaluate the same operations with the same
/// roundings (fma_hd), so the host test measures the device's numbers.
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>

#include <cstdint>

namespace attnpool::detail {

/// Minimax coefficients c1..cN of 2^f ~ 1 + f (c1 + f (c2 + ... + f cN)) on [-1/2, 1/2], fitted
/// in relative error with the constant term fixed at 1 (Remez exchange, 40-digit arithmetic,
/// then rounded to float). kFitError is the fit's error in exact arithmetic; the float32
/// evaluation adds its roundings (tests/core/test_exp2_emulated.cpp measures the total over
/// every float f of the reduced range and holds it to kMaxRelError).
template <int Degree>
struct exp2_minimax;

/// Degree 3, for comparison only: 1.0e-4 relative error (FlashAttention-4's choice for bf16
/// outputs; our float32 results need 1e-5 at most, see kMaxRelError of the others).
template <>
struct exp2_minimax<3> {
  static constexpr int kDegree = 3;
  static constexpr float c[3] = {0.6932829022407532f, 0.24221095442771912f, 0.05500893294811249f};
  static constexpr double kFitError = 1.013e-4;
  static constexpr double kMaxRelError = 1.02e-4;
};

/// Degree 4: 2.8e-6 relative error. A weight error of e moves a normalised output by at most
/// 2 e of sum_j w_j |v_j| / sum_j w_j, so degree 4 alone would spend 5.6e-6 of the 1e-5
/// tolerance (tests/support/test_support.hpp, tolerance_for): allowed, but too close to it.
template <>
struct exp2_minimax<4> {
  static constexpr int kDegree = 4;
  static constexpr float c[4] = {0.6931241750717163f, 0.24024099111557007f, 0.055906426161527634f,
                                 0.009582852944731712f};
  static constexpr double kFitError = 2.820e-6;
  static constexpr double kMaxRelError = 3.0e-6;
};

/// Degree 5: 9.1e-8 fit error, about 1.5e-7 with the float32 roundings, below ex2.approx's
/// 2^-22 = 2.4e-7 relative error: the emulated weights are as good as the MUFU's, and the
/// accuracy tests see no difference. The fused agent's choice.
template <>
struct exp2_minimax<5> {
  static constexpr int kDegree = 5;
  static constexpr float c[5] = {0.6931470036506653f, 0.24022242426872253f, 0.05550733581185341f,
                                 0.009671512991189957f, 0.001326472731307149f};
  static constexpr double kFitError = 9.148e-8;
  static constexpr double kMaxRelError = 2.0e-7;
};

/// The degree the fused agent emulates with.
inline constexpr int kExp2EmulatedDegree = 5;

/// Inputs are clamped to [kExp2EmulatedLow, kExp2EmulatedHigh] before the reduction, so that
/// the exponent arithmetic stays inside the normal floats: 2^f has biased exponent 126 (f < 0)
/// or 127 (f >= 0), and n = -126 comes with f >= 0 only (x >= -126), so the biased exponent of
/// the result is at least 1; n <= 127 keeps it at most 254.
inline constexpr float kExp2EmulatedLow = -126.0f;
inline constexpr float kExp2EmulatedHigh = 127.0f;

/// x clamped to [kExp2EmulatedLow, kExp2EmulatedHigh], NaN to the upper bound: two FMNMX on the
/// device (fminf and fmaxf return the other operand of a NaN); on the host the same results by
/// compares, which vectorise (std::fmin is a library call without -ffinite-math-only).
ATTNPOOL_HD float clamp_exp2_input(float x) {
#if defined(__CUDA_ARCH__)
  return fmaxf(fminf(x, kExp2EmulatedHigh), kExp2EmulatedLow);
#else
  const float hi = x < kExp2EmulatedHigh ? x : kExp2EmulatedHigh;  // NaN < hi is false
  return hi > kExp2EmulatedLow ? hi : kExp2EmulatedLow;
#endif
}

/// 2^f for f in [-1/2, 1/2], by Horner: Degree FFMAs, the last one adding the exact 1.
/// p f + c_I, then on down to c_0, the coefficients read as constants: a device function may
/// not index the static array at run time, and the unrolled chain also lets loops over it
/// vectorise on the host (GCC does not vectorise a loop nest with an inner loop left in it).
template <int Degree, int I>
ATTNPOOL_HD float exp2_horner(float p, float f) {
  if constexpr (I < 0) {
    return p;
  } else {
    constexpr float ci = exp2_minimax<Degree>::c[I];
    return exp2_horner<Degree, I - 1>(fma_hd(p, f, ci), f);
  }
}

template <int Degree>
ATTNPOOL_HD float exp2_reduced(float f) {
  constexpr float top = exp2_minimax<Degree>::c[Degree - 1];
  return fma_hd(exp2_horner<Degree, Degree - 2>(top, f), f, 1.0f);
}

/// 2^x on the FMA pipe (no MUFU, no table, no branch). Relative error at most
/// exp2_minimax<Degree>::kMaxRelError for x in [-126, 127]; below, 2^-126 (the smallest normal
/// float) rather than 0 or a denormal, which no sum that holds its maximum's 1 can see. Above
/// 127, +inf and NaN give 2^127 (the clamp drops NaN to its upper bound): never inf or NaN, but
/// far past any limit the lazy rescale tests, so such a chunk is still rebased, as it is with
/// MUFU.EX2's inf or NaN.
/// About 3 + Degree + 1 FMA-pipe instructions (FADD x3, FFMA xDegree; the shift-and-add may be
/// one LEA on the integer pipe) and 2 FMNMX.
template <int Degree = kExp2EmulatedDegree>
ATTNPOOL_HD float exp2_fma(float x) {
  const float xc = clamp_exp2_input(x);
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const float t = xc + kMagic;           // t's low mantissa bits hold n (two's complement)
  const float f = xc - (t - kMagic);     // exact: t - kMagic = n, and |xc - n| <= 1/2
  const float p = exp2_reduced<Degree>(f);
  // n << 23 into the exponent field: kMagic's own bits vanish under the shift (its low 9 bits
  // are 0), so shifting t's bits gives n << 23 directly. Unsigned: no signed-overflow UB.
  const auto bits = static_cast<std::uint32_t>(float_as_int(p)) +
                    (static_cast<std::uint32_t>(float_as_int(t)) << 23);
  return int_as_float(static_cast<std::int32_t>(bits));
}

}  // namespace attnpool::detail
