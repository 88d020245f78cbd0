// Text to float32 for the readers: std::from_chars (exact, locale-free), with strtod consulted
// only to tell an underflow (fine: the value is 0 or subnormal) from an overflow.
#include "number_text.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <system_error>

namespace attnpool::cli {
namespace {

// Field text quoted for a message, cut short so that a stray 10 MB field stays readable.
std::string quote_text(std::string_view text) {
  constexpr std::size_t kMax = 40;
  std::string s = "'";
  for (const char c : text.substr(0, kMax)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      s += "\\x";
      s += kHex[u >> 4];
      s += kHex[u & 0xf];
    } else {
      s += c;
    }
  }
  if (text.size() > kMax) s += "...";
  return s + "'";
}

}  // namespace

number_parse parse_float32(std::string_view text) noexcept {
  number_parse r;
  if (text.empty()) {
    r.what = number_parse::status::empty;
    return r;
  }
  // from_chars takes a '-' but not a '+'; strtod (and so every CSV writer's reader) takes both.
  std::string_view digits = text;
  if (digits.front() == '+') {
    digits.remove_prefix(1);
    if (digits.empty() || digits.front() == '-' || digits.front() == '+') {
      r.what = number_parse::status::not_a_number;
      return r;
    }
  }
  double v = 0.0;
  const char* const first = digits.data();
  const char* const last = first + digits.size();
  const auto [end, ec] = std::from_chars(first, last, v, std::chars_format::general);
  if (ec == std::errc::invalid_argument || end != last) {
    r.what = number_parse::status::not_a_number;
    return r;
  }
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves v alone on both overflow and underflow; strtod tells them apart.
    std::string copy(digits);
    v = std::strtod(copy.c_str(), nullptr);
    if (std::isinf(v)) {
      r.what = number_parse::status::out_of_range;
      return r;
    }
  }
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
  return r;
}

std::string describe(const number_parse& result, std::string_view text) {
  switch (result.what) {
    case number_parse::status::ok:
      return "ok";
    case number_parse::status::empty:
      return "empty field; expected a number";
    case number_parse::status::not_a_number:
      return quote_text(text) + " is not a number";
    case number_parse::status::not_finite:
      return quote_text(text) + " is not finite; the data must be finite";
    case number_parse::status::out_of_range:
      return quote_text(text) + " is outside float32's range (magnitude above 3.40282347e+38)";
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
