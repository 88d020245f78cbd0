// Text to float32 for the readers: std::from_chars (exact, locale-free), with strtod consulted
// only to tell an underflow (fine: the value is 0 or subnormal) from an overflow.
#include "number_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <system_error>

namespace attnpool::cli {
namespace {

// The length of the valid UTF-8 sequence at the start of `s` that encodes a printable
// character, or 0 (an invalid, overlong or surrogate sequence, or a C1 control).
std::size_t printable_utf8(std::string_view s) noexcept {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  std::size_t len = 0;
  char32_t cp = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1fu;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0fu;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (std::size_t i = 1; i < len; ++i) {
    if ((b(i) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i) & 0x3fu);
  }
  const char32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  if (cp <= 0x9f) return 0;  // C1 controls: CSI (U+009B) starts an escape sequence
  return len;
}

}  // namespace

std::string printable(std::string_view text, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto u = static_cast<unsigned char>(text[i]);
    std::size_t len = 1;
    if (u >= 0x80) len = printable_utf8(text.substr(i));
    if (i + std::max<std::size_t>(len, 1) > max_bytes) break;
    if (u >= 0x20 && u < 0x7f) {
      s += text[i];
    } else if (len > 1) {
      s.append(text.substr(i, len));
    } else {
      len = 1;
      s += "\\x";
      s += kHex[u >> 4];
      s += kHex[u & 0xf];
    }
    i += len;
  }
  if (i < text.size()) s += "...";
  return s;
}

std::string quoted(std::string_view text, std::size_t max_bytes) {
  // Appended piecewise: GCC 12's -Wrestrict misfires on "literal" + std::string at -O3.
  std::string s = "'";
  s += printable(text, max_bytes);
  s += '\'';
  return s;
}

namespace {

// from_chars on [first, last) in `format`, with the sign already removed.
std::from_chars_result parse_unsigned(const char* first, const char* last, double& v,
                                      std::chars_format format) noexcept {
  if (first == last || *first == '-' || *first == '+') return {first, std::errc::invalid_argument};
  return std::from_chars(first, last, v, format);
}

}  // namespace

number_parse parse_float32(std::string_view text) noexcept {
  number_parse r;
  if (text.empty()) {
    r.what = number_parse::status::empty;
    return r;
  }
  // The sign is taken here: from_chars takes a '-' but not a '+', strtod (and so every CSV
  // writer's reader) takes both, and a hexadecimal float's "0x" comes after the sign.
  const bool negative = text.front() == '-';
  const std::string_view magnitude = text.substr(negative || text.front() == '+' ? 1 : 0);
  std::string_view digits = magnitude;
  std::chars_format format = std::chars_format::general;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
    format = std::chars_format::hex;
    // libstdc++ 12's hexadecimal from_chars takes "1p+-3" whole, where strtod stops before the
    // 'p': such text is not a number.
    const std::size_t p = digits.find_first_of("pP");
    if (p != std::string_view::npos && digits.substr(p + 1, 2) == "+-") {
      r.what = number_parse::status::not_a_number;
      return r;
    }
  }
  double v = 0.0;
  const char* const first = digits.data();
  const char* const last = first + digits.size();
  const auto [end, ec] = parse_unsigned(first, last, v, format);
  if (ec == std::errc::invalid_argument || end != last) {
    r.what = number_parse::status::not_a_number;
    return r;
  }
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves v alone on both overflow and underflow; strtod tells them apart.
    const std::string copy(magnitude);
    v = std::strtod(copy.c_str(), nullptr);
    if (std::isinf(v)) {
      r.what = number_parse::status::out_of_range;
      return r;
    }
  }
  if (negative) v = -v;
  if (!std::isfinite(v)) {
    r.what = number_parse::status::not_finite;
    return r;
  }
  const auto f = static_cast<float>(v);
  if (std::isinf(f)) {
    r.what = number_parse::status::out_of_range;
    return r;
  }
  r.value = f;
  r.exact = v;
  return r;
}

std::string describe(const number_parse& result, std::string_view text) {
  switch (result.what) {
    case number_parse::status::ok:
      return "ok";
    case number_parse::status::empty:
      return "empty field; expected a number";
    case number_parse::status::not_a_number:
      return quoted(text) + " is not a number";
    case number_parse::status::not_finite:
      return quoted(text) + " is not finite; the data must be finite";
    case number_parse::status::out_of_range:
      return quoted(text) + " is outside float32's range (magnitude above 3.40282347e+38)";
  }
  return "invalid";
}

std::string describe_non_finite(double value) {
  if (std::isnan(value)) return "value is NaN; the data must be finite";
  if (std::isinf(value)) {
    return std::string("value is ") + (value > 0 ? "+inf" : "-inf") + "; the data must be finite";
  }
  return "value is outside float32's range (magnitude above 3.40282347e+38)";
}

}  // namespace attnpool::cli
