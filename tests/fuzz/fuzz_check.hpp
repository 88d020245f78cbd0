// What every fuzz target checks besides "no crash, no sanitizer report": an accepted table is
// whole and finite, and a rejection is an input_error whose message is safe to print (no control
// byte reaches the terminal) and bounded, whatever bytes the input held. A failed check aborts,
// which libFuzzer reports as a crash with the input that caused it.
#pragma once

#include "table.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

namespace attnpool::fuzz {

/// A header names at most 20 columns of 64 bytes, each escaped to at most 4 bytes a byte.
inline constexpr std::size_t kMaxMessageBytes = 8192;

[[noreturn]] inline void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz check failed: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

inline void check_message(std::string_view message) {
  if (message.size() > kMaxMessageBytes) fail("message too long", message.substr(0, 200));
  for (const char c : message) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) fail("control byte in message", message);
  }
}

inline void check_table(const cli::numeric_table& t, std::size_t cols) {
  if (t.rows == 0) fail("accepted table", "no rows");
  if (t.cols() != cols || t.values.size() != t.rows * cols) fail("accepted table", "wrong shape");
  for (const float v : t.values)
    if (!std::isfinite(v)) fail("accepted table", "non-finite value");
}

/// Runs parse(names) and checks its outcome.
template <class Parse>
void check_parse(Parse&& parse, std::span<const std::string> names) {
  try {
    check_table(parse(names), names.size());
  } catch (const cli::input_error& e) {
    check_message(e.what());
  }
}

}  // namespace attnpool::fuzz
