/// \file
/// 3xTF32: float32-level dot products on tf32 tensor cores (CUTLASS's "fast accurate" GEMMs),
/// for the fused forward's tensor-core path (kernels/fused/tc_agent.cuh, fused_tensor_cores()).
/// Each operand x is split into big = tf32(x) and small = tf32(x - big), and x . y is taken as
/// big_x . small_y + small_x . big_y + big_x . big_y, the small_x . small_y term dropped.
///
/// The split (tf32: 8 exponent bits, 10 stored mantissa bits; cvt.rna rounds to nearest, ties
/// away): |x - big| <= 2^-11 |x| and x - big is exact in float, so small carries x to within
/// |x - big - small| <= 2^-11 |x - big| <= 2^-22 |x|, and |small| <= 2^-11 |x|. The products of
/// tf32 numbers are exact in float (11 x 11 significant bits), so what the three terms miss of
/// x_c y_c is small_x small_y plus the two operands' split remainders, in all at most
/// 3 * 2^-22 |x_c y_c| = 12 u |x_c y_c| (u = 2^-24).
///
/// The accumulation, as the agent orders it: from 0, every k-step of 8 coordinates adds
/// big_x . small_y, then small_x . big_y, then big_x . big_y, each one mma. The emulation below
/// models one mma as exact products summed and rounded once to nearest; then each of the
/// 3 D / 8 roundings is at most u times the running sum's magnitude, <= (1 + 2^-10) sum |x_c y_c|.
/// Hence, for the emulation (tests/core/test_tf32_split.cpp measures it):
///   |dot3 - x . y| <= (12 + 3 D / 8 (1 + 2^-10)) u sum_c |x_c y_c|.
/// The hardware's mma is not documented to round to nearest: measurements of tf32 tensor cores
/// find exact products, aligned and truncated. tc_score_error allows 2u per mma for that, twice
/// the emulation's u.
///
/// The score. With a = log2(e) / (2 h^2), a block centre mu (the midrange of the block's
/// queries), q' = fl(q - mu), k' = fl(k - mu), the log2 score s = -a |q - k|^2 is
///   s_ij = S_ij + kb_j - cq_i,  S_ij = (2a q'_i) . k'_j (3xTF32),  kb_j = -a |k'_j|^2,
///   cq_i = a |q'_i|^2,
/// and the agent weighs key j by 2^S_ij * ew_j with ew_j = 2^kb_j, against the row's reference
/// -cq_i (a fixed reference, no running maximum: under the bound every |S| <= a R^2 / 2 < 1).
/// Errors to first order, log2 units, with R = |q'| + Rk, Rk = max_j |k'_j| and
/// P = 2a |q'||k'| <= a R^2 / 2:
///   centring q' and k' (one rounding each):    2a |q' - k'| u (|q'| + |k'|) <= 2 u a R^2
///   2a q' rounded:                             u P                          <= u a R^2 / 2
///   kb = -a |k'|^2 (double, rounded once):     u a |k'|^2                   <= u a R^2
///   ew = 2^kb (ex2.approx, 2^-22 relative):    4 u / ln 2                   <= 6 u
///   the split:                                 12 u P                       <= 6 u a R^2
///   3 D / 8 mma roundings at 2u P each:        (3 D / 4) u P                <= (3 D / 8) u a R^2
///   a itself, the float score constant:        u |s|                        <= u a R^2
///   the reference cq (double, rounded once):   u a |q'|^2                   <= u a R^2
/// in all E <= u ((12 + 3 D / 8) a R^2 + 6) (11.5 rounded up). The bar is the CPU dot form's and
/// the expanded d = 1 score's, E <= 2^-19 (src/cpu/engine.cpp, kDotFormMaxError): a R^2 <=
/// 26 / (12 + 3 D / 8), that is 1.44 at D = 16, 1.08 at D = 32, 0.72 at D = 64. Where it fails
/// the block runs the FFMA path. The bound keeps |S| <= a R^2 / 2 and |kb| <= a R^2, so the
/// weights 2^S ew need no running maximum.
///
/// So the tensor cores serve only wide kernels against the data's spread, where the weights of
/// a row differ by less than 2^(a R^2) (2.7x at D = 16): the price of the expanded score's
/// cancellation at float32's bar, the same as the CPU dot form's.
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>

#include <cstdint>

namespace attnpool::detail {

/// x rounded to tf32 as cvt.rna.tf32.f32 rounds it (nearest, ties away from zero), returned as
/// the float with the 13 low mantissa bits cleared (the device result masked, so that it is a
/// well-defined float to subtract). A finite x near FLT_MAX rounds to inf; inf and NaN keep their
/// 19 high bits, which is what ptxas emits for cvt.rna on sm_90 (SASS: |x| < inf ? x + 0x1000 :
/// x, then & 0xffffe000), so host and device agree bit for bit.
ATTNPOOL_HD float tf32_round(float x) {
#if defined(__CUDA_ARCH__)
  std::uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r & 0xffffe000u);
#else
  const auto b = static_cast<std::uint32_t>(float_as_int(x));
  // Half an ulp of tf32 added to the magnitude bits, then truncated: ties go away from zero,
  // and a carry moves into the exponent as rounding up should.
  const std::uint32_t r = (b & 0x7f800000u) == 0x7f800000u ? b : b + 0x1000u;
  return int_as_float(static_cast<std::int32_t>(r & 0xffffe000u));
#endif
}

/// x = big + small + r with big = tf32(x), small = tf32(x - big), |r| <= 2^-22 |x|.
struct tf32_pair {
  float big, small;
};

ATTNPOOL_HD tf32_pair tf32_split(float x) {
  const float big = tf32_round(x);
  return {big, tf32_round(x - big)};  // x - big is exact
}

/// The bound E of the tensor-core score, log2 units, for a row at |q'| = q_dist from the block
/// centre against keys within rk of it (see the file comment): u ((12 + 3 D / 8) a R^2 + 6).
ATTNPOOL_HD double tc_score_error(double a, double q_dist, double rk, int dims) {
  const double r = q_dist + rk;
  return 0x1p-24 * ((12.0 + 0.375 * dims) * a * r * r + 6.0);
}

/// The bar E <= 2^-19 (the CPU dot form's kDotFormMaxError). NaN and inf fail.
inline constexpr double kTcMaxError = 0x1p-19;

/// Whether the row may take the tensor-core score: tc_score_error <= kTcMaxError.
ATTNPOOL_HD bool tc_score_ok(double a, double q_dist, double rk, int dims) {
  return tc_score_error(a, q_dist, rk, dims) <= kTcMaxError;
}

// ---- The tensor-core agent's fragment layout --------------------------------------------------
// Where each lane's operands of mma.m16n8k8 .tf32 come from (PTX ISA, "Matrix Fragments for
// mma.m16n8k8"), as kernels/fused/tc_agent.cuh indexes them; tests/core/test_tf32_split.cpp
// rebuilds the matrices from these indices by the PTX formulas and checks the scores.
// Lane l is in row group g = l >> 2 and quad place t = l & 3.

/// A register r (a0..a3) at k-step ks holds row tc_a_row(g, r) of the m16 tile and coordinate
/// tc_a_coord(ks, t, r): rows g, g + 8, g, g + 8 and coordinates t, t, t + 4, t + 4.
ATTNPOOL_HD constexpr int tc_a_row(int g, int r) {
  return g + 8 * (r & 1);
}
ATTNPOOL_HD constexpr int tc_a_coord(int ks, int t, int r) {
  return ks * 8 + t + 4 * (r >> 1);
}

/// Accumulator element e (c0..c3) is row tc_c_row(g, e) and key column tc_c_col(t, e) of the
/// m16 x n8 tile: rows g, g, g + 8, g + 8 and columns 2t, 2t + 1, 2t, 2t + 1.
ATTNPOOL_HD constexpr int tc_c_row(int g, int e) {
  return g + 8 * (e >> 1);
}
ATTNPOOL_HD constexpr int tc_c_col(int t, int e) {
  return 2 * t + (e & 1);
}

/// A staged key's floats: coordinate c's big part at tc_key_slot(c), its small part 2 further
/// on. Per k-step ks, quad place t reads {big_c, big_c+4, small_c, small_c+4} for c = 8 ks + t
/// at tc_b_offset(ks, t) (one LDS.128): its B fragments b0 (coordinate t) and b1 (t + 4) of key
/// column g, big then small.
ATTNPOOL_HD constexpr int tc_key_slot(int c) {
  return (c >> 3) * 16 + (c & 3) * 4 + ((c >> 2) & 1);
}
ATTNPOOL_HD constexpr int tc_b_offset(int ks, int t) {
  return ks * 16 + t * 4;
}

/// Host emulation of one output element of one mma.sync m16n8k8 tf32 step: c + sum_k a_k b_k
/// over 8 tf32 pairs, the products exact (as the hardware's), summed and rounded to float once.
/// Double holds each product exactly and the sum of 9 terms to 2^-50, far below float's u.
inline float mma_tf32_emulated(float c, const float* a, const float* b) {
  double s = static_cast<double>(c);
  for (int k = 0; k < 8; ++k) s += static_cast<double>(a[k]) * static_cast<double>(b[k]);
  return static_cast<float>(s);
}

/// x . y over Dims (a multiple of 8) coordinates as the tensor-core agent computes S_ij: from 0,
/// per k-step big_x . small_y, small_x . big_y, big_x . big_y, each an emulated mma.
/// Terms = 1: big_x . big_y alone (1xTF32), what one mma per step would give.
template <int Dims, int Terms = 3>
float tf32_dot_emulated(const float* x, const float* y) {
  static_assert(Dims % 8 == 0, "whole k-steps of 8 coordinates");
  static_assert(Terms == 1 || Terms == 3, "1xTF32 or 3xTF32");
  float xb[8], xs[8], yb[8], ys[8];
  float acc = 0.0f;
  for (int k0 = 0; k0 < Dims; k0 += 8) {
    for (int k = 0; k < 8; ++k) {
      const tf32_pair px = tf32_split(x[k0 + k]), py = tf32_split(y[k0 + k]);
      xb[k] = px.big;
      xs[k] = px.small;
      yb[k] = py.big;
      ys[k] = py.small;
    }
    if constexpr (Terms == 3) {
      acc = mma_tf32_emulated(acc, xb, ys);
      acc = mma_tf32_emulated(acc, xs, yb);
    }
    acc = mma_tf32_emulated(acc, xb, yb);
  }
  return acc;
}

}  // namespace attnpool::detail
