// Fuzz target: parse_float32 against strtod, its documented model ("C" locale, the default of a
// process that never calls setlocale), and the escaping of text for messages.
//   - An accepted number is finite and is what strtod reads from the whole text, rounded to
//     float32 (bitwise, so the sign of zero too).
//   - Text that strtod reads whole to a finite double, without the leading white space strtod
//     skips and the fields do not carry, is accepted unless it is beyond float32's range.
//   - printable and describe never let a control byte through, and printable stays within
//     4 bytes a shown byte plus "...".
#include "fuzz_check.hpp"
#include "number_text.hpp"

#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

using attnpool::cli::number_parse;

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const number_parse r = attnpool::cli::parse_float32(text);

  const std::string copy(text);  // NUL-terminated; an embedded NUL ends strtod's text early
  char* end = nullptr;
  const double d = std::strtod(copy.c_str(), &end);
  const bool whole = size > 0 && end == copy.c_str() + size;
  const bool leading_space = size > 0 && std::isspace(static_cast<unsigned char>(text[0])) != 0;

  if (r.ok()) {
    if (!std::isfinite(r.value)) attnpool::fuzz::fail("accepted a non-finite value", text);
    if (!whole) attnpool::fuzz::fail("accepted what strtod does not read whole", text);
    if (!same_bits(r.value, static_cast<float>(d)))
      attnpool::fuzz::fail("value differs from strtod's", text);
  } else if (whole && !leading_space && std::isfinite(d) &&
             std::isfinite(static_cast<float>(d)) && r.what != number_parse::status::out_of_range) {
    attnpool::fuzz::fail("rejected what strtod reads whole", text);
  }

  attnpool::fuzz::check_message(attnpool::cli::describe(r, text));
  for (const std::size_t max : {std::size_t{0}, std::size_t{7}, std::size_t{64}}) {
    const std::string shown = attnpool::cli::printable(text, max);
    attnpool::fuzz::check_message(shown);
    if (shown.size() > 4 * max + 3) attnpool::fuzz::fail("printable too long", shown);
  }
  return 0;
}
