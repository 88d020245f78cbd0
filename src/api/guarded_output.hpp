// What the host entry points wrap around an engine call so that finite inputs near float32's
// range never give inf, and so that the caller's output stays untouched when the engine throws
// after writing (a compact kernel's empty row under empty_support::error).
//
// The float32 engines accumulate sum_j 2^(s_j - ref) v_j unnormalised, and each weight may
// exceed 1 by the engines' slack, so m values near FLT_MAX overflow the accumulator although
// the pooled answer, a weighted mean, is no larger than max |v|. Scaling a value column by an
// exact power of two before the engine, and the output column back after, is exact (short of
// subnormals): ordinary data are never scaled, so their results stay bitwise the same.
#pragma once

#include <attnpool/types.hpp>

#include "src/validate/validate.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace attnpool::detail {

// |x|'s bits: for finite x and inf they order as the magnitudes do (NaN above them all), and an
// integer maximum vectorises where a float one would not.
inline std::uint32_t magnitude_bits(float x) {
  return std::bit_cast<std::uint32_t>(x) & 0x7fffffffu;
}

// The largest |element| of column c of a host view, as magnitude_bits. No allocation: the
// common call scales nothing and should cost one read of the column.
inline std::uint32_t column_magnitude(const_view a, std::size_t c) {
  std::uint32_t m = 0;
  if (a.ld == 1) {  // a contiguous column: a loop that vectorises
    for (std::size_t j = 0; j < a.rows; ++j) m = std::max(m, magnitude_bits(a.data[j]));
  } else {
    for (std::size_t j = 0; j < a.rows; ++j) m = std::max(m, magnitude_bits(a(j, c)));
  }
  return m;
}

// The largest |element| of a host view (0 for an empty or null one; NaN if it holds one).
inline float max_magnitude(const_view a) {
  std::uint32_t m = 0;
  if (a.data != nullptr)
    for (std::size_t c = 0; c < a.cols; ++c) m = std::max(m, column_magnitude(a, c));
  return std::bit_cast<float>(m);
}

// Per value column c, overflow_shift(max_j |v_jc|, terms). Empty when every one is 0, as it is
// for all but values near float32's range.
inline std::vector<int> overflow_shifts(const_view v, std::size_t terms) {
  std::vector<int> shift;
  if (v.data == nullptr) return shift;
  for (std::size_t c = 0; c < v.cols; ++c) {
    const int e = overflow_shift(std::bit_cast<float>(column_magnitude(v, c)),
                                 static_cast<double>(terms));
    if (e == 0) continue;
    if (shift.empty()) shift.assign(v.cols, 0);
    shift[c] = e;
  }
  return shift;
}

// The largest of the shifts (0 if none): one scale for every column, where a result mixes them.
inline int uniform_shift(const std::vector<int>& shift) {
  return shift.empty() ? 0 : *std::max_element(shift.begin(), shift.end());
}

// A dense copy of `v` with column c multiplied by 2^-shift[c] (shift non-empty).
inline std::vector<float> scaled_copy(const_view v, const std::vector<int>& shift) {
  std::vector<float> out(v.rows * v.cols);
  for (std::size_t j = 0; j < v.rows; ++j)
    for (std::size_t c = 0; c < v.cols; ++c)
      out[j * v.cols + c] = std::ldexp(v(j, c), -shift[c]);
  return out;
}

// Targets of the learning API far from 1, scaled by one power of two 2^-shift for every column
// (its losses sum the columns): a loss, a sum of squares, scales back by 2^(2 shift). The shift
// keeps both the pooled sums (overflow_shifts) and the float32 loss gradient, which grows with
// the square of the targets (2 e times the values), in range: |y| <= kMaxTarget after it.
// view() is y itself where shift is 0, as it is for all but targets beyond 2^32.
class scaled_targets {
 public:
  static constexpr double kMaxTarget = 0x1p32;

  scaled_targets(const_view y, std::size_t terms)
      : shift_(std::max(uniform_shift(overflow_shifts(y, terms)), gradient_shift(y))), view_(y) {
    if (shift_ == 0) return;
    store_ = scaled_copy(y, std::vector<int>(y.cols, shift_));
    view_ = const_view{store_.data(), y.rows, y.cols};
  }
  const_view view() const { return view_; }
  int shift() const { return shift_; }
  // The e >= 0 with max |y| 2^-e <= kMaxTarget (0 for non-finite targets: nothing to scale).
  static int gradient_shift(const_view y) {
    const double amax = max_magnitude(y);
    if (!(amax > kMaxTarget) || !std::isfinite(amax)) return 0;
    return std::ilogb(amax / kMaxTarget) + 1;
  }
  // A loss (or its gradient) of the scaled targets, for the original ones.
  double unscale_loss(double loss) const { return std::ldexp(loss, 2 * shift_); }

 private:
  int shift_;
  std::vector<float> store_;
  const_view view_;
};

// One engine call's values and output. The engine reads values() and writes out(); commit()
// then puts the result into the caller's output (unscaled, copied from scratch). Without
// commit() (the engine threw) the caller's output keeps what it had, where scratch was asked
// for.
class guarded_output {
 public:
  // values: the call's value rows (a null view where the output is not a weighted sum, as for
  // attention_weights); terms: the most value rows one output row sums; scratch: the engine
  // may throw after writing.
  guarded_output(const_view values, std::size_t terms, mutable_view out, bool scratch)
      : shift_(overflow_shifts(values, terms)), values_(values), out_(out), engine_out_(out) {
    if (!shift_.empty()) {
      scaled_ = scaled_copy(values, shift_);
      values_ = const_view{scaled_.data(), values.rows, values.cols};
    }
    if (scratch) {
      scratch_.resize(checked_mul("guarded_output", "out", out.rows, out.cols));
      engine_out_ = mutable_view{scratch_.data(), out.rows, out.cols};
    }
  }

  const_view values() const { return values_; }
  mutable_view out() const { return engine_out_; }
  // Per value column, the power of two the engine's values were divided by (empty: none).
  const std::vector<int>& shifts() const { return shift_; }

  void commit() const {
    if (shift_.empty() && scratch_.empty()) return;
    for (std::size_t i = 0; i < out_.rows; ++i) {
      const float* src = engine_out_.row(i);
      float* dst = out_.row(i);
      for (std::size_t c = 0; c < out_.cols; ++c)
        dst[c] = shift_.empty() ? src[c] : std::ldexp(src[c], shift_[c]);
    }
  }

 private:
  std::vector<int> shift_;
  std::vector<float> scaled_, scratch_;
  const_view values_;
  mutable_view out_, engine_out_;
};

}  // namespace attnpool::detail
