/// \file
/// The double-precision oracle, with the per-element error scales that tests derive their
/// tolerances from. Plain two-pass loops (row maximum, then exp-sum), single-threaded, slow by
/// design: keep it obviously correct. backend::reference rounds these results to float.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>
#include <vector>

namespace attnpool::reference {

/// fp64 pooled output with, per element (i, c), the two scales of the float32 error bound:
///   abs_scale(i, c)   = sum_j w_ij |v_jc|                (rounding of the weighted sum)
///   sensitivity(i, c) = sum_j w_ij |s_ij| |v_jc - out_ic| (first-order effect of a relative
///                       error eps in every score s_ij, in natural-log units)
/// so that a float32 engine whose scores carry relative error <= k * eps satisfies
///   |out32 - out| <~ c1 * abs_scale + k * eps * sensitivity.
struct pooled {
  std::size_t n = 0, dv = 0;
  std::vector<double> out, abs_scale, sensitivity;  // each n x dv, row-major
};

/// The oracle for pool(). Throws invalid_argument as attnpool::pool does.
pooled pool(const_view queries, const_view keys, const_view values, const pool_params& params);

/// The oracle for attention_weights(): n x m, row-major, fp64.
std::vector<double> weights(const_view queries, const_view keys, const pool_params& params);

}  // namespace attnpool::reference
