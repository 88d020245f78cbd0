/// \file
/// The expanded Gaussian score at d = 1, for the fused GPU agent: one FFMA per pair instead of
/// the direct form's FADD (q - k), square and FFMA. With a = log2(e) / (2 h^2) and a centre mu,
/// q' = q - mu and k' = k - mu:
///   s_ij = -a (q' - k'_j)^2 = (2a q'_i) k'_j + (-a k'_j^2) - a q'_i^2,
/// so 2^(s_ij - ref_i) = 2^x_ij * f_i with x_ij = fma(slope_i, k'_j, kb_j) (the per-key term kb_j
/// computed once per tile) and the per-row factor f_i = 2^-(a q'_i^2 + ref_i), applied once per
/// chunk to its sums.
///
/// Accuracy (u = 2^-24, R = |q'| + Rk, Rk = max_j |k'_j|, every |s| and |x| <= a R^2). To first
/// order the error of x_ij - log2 f_i against the exact score minus ref is at most:
///   centring q' and k' (one rounding each):      2a |q' - k'| u (|q'| + |k'|) <= 2 u a R^2
///   slope = 2a q' rounded:                        u 2a |q'||k'|                <= u a R^2 / 2
///   kb = a k'^2 (double, rounded once):           u a k'^2                     <= u a R^2
///   the FFMA:                                     u |x|                        <= u a R^2
///   a itself, the float score constant (the direct form's a too): u |s|      <= u a R^2
///   f: cq + ref = cf + r split exactly, 2^-cf by ex2.approx (2^-22 relative),
///   2^-r by 1 - r ln2 (|r| <= 2^-17: exact to 1e-11), one product: 6 u / ln2 <= 9 u
/// so |err| <= E = u (6 a R^2 + 9) in log2 units, and a weight's relative error is ln2 E.
/// The bar is the CPU dot form's (src/cpu/engine.cpp, docs/cpu.md: E <= 2^-19, which keeps the
/// output within 2 ln2 E = 2.6e-6 of sum_j w_j |v_j| beside the other roundings), so a row takes
/// the expanded form where a R^2 <= 23 / 6 = 3.83 (h = 0.5 on data in [0, 1): a R^2 <= 2.89).
/// Where it fails (a small bandwidth against the data's spread, or keys far from the queries)
/// the direct form stays.
///
/// Host and device evaluate the same operations with the same roundings (fma_hd, float and
/// double conversions), except fast_exp2 (ex2.approx on the device, exp2_poly on the host):
/// tests/core/test_gpu_arith.cpp checks this file on the CPU against the fp64 reference.
#pragma once

#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/host_device.hpp>

namespace attnpool::detail {

/// The bar of the expanded form's score error, log2 units: the CPU dot form's kDotFormMaxError.
inline constexpr double kExpandedMaxError = 0x1p-19;

/// Whether a row at distance |q'| from the centre may take the expanded form against keys
/// within rk of it, for a = log2(e) / (2 h^2): E = u (6 a R^2 + 9) <= kExpandedMaxError.
/// a R <= 2^100 also keeps slope = 2a q' finite in float. NaN and inf fail.
ATTNPOOL_HD bool expanded_d1_ok(double a, double q_dist, double rk) {
  const double r = q_dist + rk;
  return 0x1p-24 * (6.0 * a * r * r + 9.0) <= kExpandedMaxError && a * r <= 0x1p100;
}

/// The bound E of expanded_d1_ok, log2 units (what the host tests hold the form to).
ATTNPOOL_HD double expanded_d1_error(double a, double q_dist, double rk) {
  const double r = q_dist + rk;
  return 0x1p-24 * (6.0 * a * r * r + 9.0);
}

/// A tile's centre and radius from its keys' extremes lo <= hi: the midrange, rounded to float,
/// and rk >= max |k'_j| over the rounded k'_j = fl(k_j - mu) (one ulp of slack for that
/// rounding).
struct d1_centre {
  float mu;
  double rk;
};

ATTNPOOL_HD d1_centre d1_centre_of(float lo, float hi) {
  const auto mu = static_cast<float>(0.5 * (static_cast<double>(lo) + hi));
  const double lo_d = static_cast<double>(mu) - lo, hi_d = static_cast<double>(hi) - mu;
  return {mu, (lo_d > hi_d ? lo_d : hi_d) * (1.0 + 0x1p-23)};
}

/// One key of an expanded tile: k' = fl(k - mu) and kb = fl(-a k'^2).
struct d1_expanded_key {
  float kc, kb;
};

ATTNPOOL_HD d1_expanded_key d1_expand_key(float k, float mu, double a) {
  const float kc = k - mu;
  return {kc, static_cast<float>(-a * static_cast<double>(kc) * kc)};
}

/// One query row against an expanded tile: slope = fl(2a q'), cq = a q'^2 (kept in double: the
/// factor splits cq + ref exactly), ok = expanded_d1_ok for the tile's radius.
struct d1_expanded_row {
  float slope;
  double cq;
  bool ok;
};

ATTNPOOL_HD d1_expanded_row d1_expand_row(float q, d1_centre c, double a) {
  const float qc = q - c.mu;
  const double qd = static_cast<double>(qc);
  const double q_dist = qd < 0.0 ? -qd : qd;
  return {static_cast<float>(2.0 * a * qd), a * qd * qd, expanded_d1_ok(a, q_dist, c.rk)};
}

/// x_ij = s_ij + a q'^2 rounded: the pair's one FFMA.
ATTNPOOL_HD float d1_expanded_exponent(const d1_expanded_row& row, const d1_expanded_key& key) {
  return fma_hd(row.slope, key.kc, key.kb);
}

/// f = 2^-(cq + ref), relative error about 2^-22 + 2u whatever |cq + ref|: cq + ref is split
/// into its float rounding cf and the remainder r (exact in double), 2^-r = 1 - r ln2 to first
/// order. +inf where -cf > 126 (ref = -inf before the first chunk, or a ref far below this
/// tile's scores): the chunk's sum is then inf and the agent rebases it, as the direct form's inf
/// weights do.
ATTNPOOL_HD float d1_expanded_factor(double cq, float ref) {
  const double c = cq + static_cast<double>(ref);
  const auto cf = static_cast<float>(c);
  if (!(cf >= -126.0f)) return -kNegInf;
  const auto r = static_cast<float>(c - static_cast<double>(cf));
  return fast_exp2(-cf) * fma_hd(-r, 0.6931471805599453f, 1.0f);
}

}  // namespace attnpool::detail
