/// \file
/// The double-precision oracle, with the per-element error scales that tests derive their
/// tolerances from. Plain two-pass loops (row maximum, then exp-sum), single-threaded, slow by
/// design: keep it obviously correct. backend::reference rounds these results to float.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>
#include <vector>

namespace attnpool::reference {

/// fp64 pooled output with, per element (i, c), the two scales of a float32 engine's error:
///   abs_scale(i, c)   = sum_j w_ij |v_jc|                 (rounding of the weighted sums)
///   score_bound(i, c) = sum_j w_ij (e^D_ij - 1) |v_jc - out_ic| / sum_j w_ij e^-D_ij
/// where D_ij bounds the error of the natural-log score s_ij: score_rel_error * |s_ij| for the
/// gaussian and laplacian kernels; for the compact kernels, whose score ln(1 - x) is
/// ill-conditioned near the edge of the support, the bound that follows from a relative error
/// score_rel_error on u^2 (src/reference/forward.cpp, score_error, derives it). If every
/// score the engine exponentiates is off by at most D_ij (up to a shift common to the row, which
/// cancels), its output is off by at most score_bound: the numerator bounds
/// |sum_j w_j (e^d_j - 1)(v_j - out)| and the denominator the perturbed normaliser. For small D
/// this is the first-order sum_j w_j D_j |v_j - out|; it stays valid (and grows quickly) where
/// float32 scores are too coarse for a first-order argument (far keys, tiny bandwidths).
struct pooled {
  std::size_t n = 0, dv = 0;
  std::vector<double> out, abs_scale, score_bound;  // each n x dv, row-major
};

/// The relative score error of the float32 engines, (d + 4) eps32: d rounded squared
/// differences summed, the scale and its constant, and the subtraction of the running maximum
/// give (d / 2 + 5 / 2) eps32; d + 4 leaves a factor of about 2.
double float32_score_error(std::size_t d);

/// The oracle for pool(), every kernel, anisotropic bandwidths and the empty_support policy
/// included (a row handled by the policy has abs_scale |out| and score_bound 0: its output is
/// exact), masks included (a masked key has weight exactly 0 and adds nothing
/// to either scale). score_rel_error < 0 means float32_score_error(d).
/// Throws invalid_argument as attnpool::pool does.
pooled pool(const_view queries, const_view keys, const_view values, const pool_params& params,
            double score_rel_error = -1.0);

/// Whether query i sees key j under params.mask (params already validated).
bool key_visible(const pool_params& params, std::size_t i, std::size_t j);

/// The oracle for attention_weights(): n x m, row-major, fp64.
std::vector<double> weights(const_view queries, const_view keys, const pool_params& params);

}  // namespace attnpool::reference
