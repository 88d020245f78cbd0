/// \file
/// Centring double data before its float32 rounding, for host entry points that receive doubles
/// (the CLI's readers, the Python binding). Values far from the origin compared with their spread
/// (Unix timestamps, x = 1e6 + U(0, 1)) lose their differences when rounded to float32: at 1e6 the
/// float spacing is 0.0625. Pooling depends on the inputs only through the differences q - k, so
/// subtracting one shift per column from keys and queries alike changes nothing but the
/// rounding. Host code, header-only: plain functions on double arrays with element strides.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace attnpool::detail {

/// Per-column shifts for a rows x cols double matrix `a` (element (i, c) at
/// a[i * row_stride + c * col_stride]), the keys: shift[c] is column c's mean, computed in double,
/// where rounding the column as it is would cost more than 2^-20 of its spread (max_i |a_ic| > 16
/// (max_i a_ic - min_i a_ic): the float32 rounding error u |a| exceeds 2^-20 of the range), and 0
/// elsewhere, so that data near the origin is rounded as given and keeps the bits of a call on
/// its float32 values. A constant column far from 0 is centred (to zeros). Non-finite values make
/// their column's shift non-finite or leave it 0; callers check finiteness before.
inline std::vector<double> centring_shifts(const double* a, std::size_t rows, std::size_t cols,
                                           std::ptrdiff_t row_stride, std::ptrdiff_t col_stride) {
  std::vector<double> shift(cols, 0.0);
  if (rows == 0) return shift;
  const auto at = [&](std::size_t i, std::size_t c) {
    return a[static_cast<std::ptrdiff_t>(i) * row_stride +
             static_cast<std::ptrdiff_t>(c) * col_stride];
  };
  for (std::size_t c = 0; c < cols; ++c) {
    // The mean about the first value, so that a large common offset does not cost the sum digits.
    const double a0 = at(0, c);
    double lo = a0, hi = a0, biggest = std::fabs(a0), sum = 0.0;
    for (std::size_t i = 0; i < rows; ++i) {
      const double x = at(i, c);
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      biggest = std::max(biggest, std::fabs(x));
      sum += x - a0;
    }
    if (biggest > 16.0 * (hi - lo)) shift[c] = a0 + sum / static_cast<double>(rows);
  }
  return shift;
}

/// out[i * cols + c] = float(a(i, c) - shift[c]): `a` (element strides as for centring_shifts)
/// shifted in double and rounded once, into a dense row-major float buffer of rows x cols.
inline void shift_to_float(const double* a, std::size_t rows, std::size_t cols,
                           std::ptrdiff_t row_stride, std::ptrdiff_t col_stride,
                           const double* shift, float* out) {
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t c = 0; c < cols; ++c)
      out[i * cols + c] = static_cast<float>(a[static_cast<std::ptrdiff_t>(i) * row_stride +
                                               static_cast<std::ptrdiff_t>(c) * col_stride] -
                                             shift[c]);
}

}  // namespace attnpool::detail
