/// \file
/// Turning a field's text into a finite float32, saying why when that fails, and making any
/// text from a file safe to print in a message.
#pragma once

#include <cstddef>
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
  double exact = 0.0;  ///< the number before the float32 rounding
  [[nodiscard]] bool ok() const noexcept { return what == status::ok; }
};

/// Parses a number as strtod does in the "C" locale (an optional sign, then decimal digits with
/// an optional '.' and exponent, or a hexadecimal float such as 0x1.8p3; also "nan" and "inf",
/// which are rejected as not finite), rounds it to float32, and requires the whole text to be
/// used. Locale-independent.
number_parse parse_float32(std::string_view text) noexcept;

/// A message for a failed parse of `text`: "'abc' is not a number", "'nan' is not finite; ...".
std::string describe(const number_parse& result, std::string_view text);

/// `text` as it may appear in a one-line message on a terminal: control bytes (C0, DEL, NUL
/// included, and the C1 controls U+0080-U+009F, which some terminals obey) and bytes that are
/// not valid UTF-8 become \xNN; valid UTF-8 is kept. At most `max_bytes` of `text` are shown,
/// cut at a character boundary and followed by "..." when cut.
std::string printable(std::string_view text, std::size_t max_bytes);

/// printable(text, max_bytes) in single quotes, for a value taken from a file.
std::string quoted(std::string_view text, std::size_t max_bytes = 40);

/// The same message for a value that arrived in binary (no text): "value is NaN; ...".
std::string describe_non_finite(double value);

}  // namespace attnpool::cli
