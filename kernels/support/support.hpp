// Launchers of the small kernels around the fused one: the unfused path's centring/norms and
// row softmax, the device-side input scan behind options.check_finite, and the column mean of
// average_pool. Host-includable; each launcher checks its launch and throws cuda_error.
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>

namespace attnpool::kernels {

/// Result of scan_inputs, in device memory (a workspace slot). Initialise first_bad to all ones
/// and max_abs_bits to 0 before the scans.
struct input_scan {
  unsigned long long first_bad[3];  ///< per matrix: smallest row-major index i * cols + j of a
                                    ///< non-finite element, or ~0 when none
  unsigned int max_abs_bits;        ///< bits of max |x| over the finite elements (q and k)
  unsigned int max_abs_v_bits;      ///< the same over the finite values
};

/// Scans `a` (device memory, ld-strided; pad elements are not read) for non-finite values,
/// lowering *first_bad to the first one's row-major index; when max_abs_bits is not null, also
/// raises it to the bits of the largest finite |x|. Integer atomics only, so the result does
/// not depend on the order blocks run in.
void scan_inputs(const_view a, unsigned long long* first_bad, unsigned int* max_abs_bits,
                 int sm_count, stream_t stream);

/// Per-dimension scales of the anisotropic bandwidth on the unfused path (s_c = 1 / h_c), passed
/// by value in the parameter block. active == 0: isotropic, no scaling.
struct dim_scales {
  int active = 0;
  float s[kMaxGpuAnisotropicDims] = {};
};

/// Unfused path, step 1: qc = (q - c) * s and kc = (k - c) * s (s = 1 unless scales.active)
/// with the centre c = keys row 0 (dense, ld = d), and their squared norms qn, kn. Centring
/// makes ||q||^2 + ||k||^2 - 2 q.k lose precision relative to the spread of the data, not to
/// its distance from the origin.
void center_and_norms(const_view q, const_view k, float* qc, float* kc, float* qn, float* kn,
                      const dim_scales& scales, stream_t stream);

/// Unfused path, step 3: turns row i of s, which holds -2 qc_i . kc_j, into the softmax weights
/// w_ij = 2^(s2_ij - max_j s2_ij) / sum, with s2_ij = score(max(qn_i + kn_j + s_ij, 0)) and
/// score the kernel's log2-score functor (constant = detail::kernel_constant). A row with no
/// key in a compact kernel's support becomes NaN (the host side applies the policy). One block
/// per row with CUB block reductions; writes only columns [0, m) of each row.
void row_softmax(float* s, std::size_t lds, std::size_t n, std::size_t m, const float* qn,
                 const float* kn, kernel kind, float constant, stream_t stream);

/// Column means of `values` accumulated in double, broadcast to every row of `out`.
void column_mean(const_view values, mutable_view out, stream_t stream);

}  // namespace attnpool::kernels
