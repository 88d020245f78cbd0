/// \file
/// Turning a field's text into a finite float32, and saying why when that fails.
#pragma once

#include <string>
#include <string_view>

namespace attnpool::cli {

/// The outcome of parse_float32.
struct number_parse {
  enum class status {
    ok,
    empty,         ///< the field is empty
    not_a_number,  ///< not a decimal floating-point number
    not_finite,    ///< NaN or infinity
    out_of_range,  ///< finite as written but beyond float32 (|x| > 3.40282347e38)
  };
  status what = status::ok;
  float value = 0.0f;
  [[nodiscard]] bool ok() const noexcept { return what == status::ok; }
};

/// Parses a decimal number as strtod does in the "C" locale (an optional sign, digits with an
/// optional '.', an optional exponent; also "nan" and "inf", which are rejected as not finite),
/// rounds it to float32, and requires the whole text to be used. Locale-independent.
number_parse parse_float32(std::string_view text) noexcept;

/// A message for a failed parse of `text`: "'abc' is not a number", "'nan' is not finite; ...".
std::string describe(const number_parse& result, std::string_view text);

/// The same message for a value that arrived in binary (no text): "value is NaN; ...".
std::string describe_non_finite(double value);

}  // namespace attnpool::cli
