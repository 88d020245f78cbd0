// Fuzz target: parse_csv on arbitrary bytes, asking for one column and for two.
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const std::vector<std::string> one{"x"}, two{"y", "x"};
  const auto parse = [&](std::span<const std::string> names) {
    return attnpool::cli::parse_csv(text, "fuzz.csv", names);
  };
  attnpool::fuzz::check_parse(parse, one);
  attnpool::fuzz::check_parse(parse, two);
  return 0;
}
