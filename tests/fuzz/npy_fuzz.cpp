// Fuzz target: parse_npy on arbitrary bytes, asking for column "0" and for columns "1", "0".
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const unsigned char> bytes(data, size);
  static const std::vector<std::string> one{"0"}, two{"1", "0"};
  const auto parse = [&](std::span<const std::string> names) {
    return attnpool::cli::parse_npy(bytes, "fuzz.npy", names);
  };
  attnpool::fuzz::check_parse(parse, one);
  attnpool::fuzz::check_parse(parse, two);
  return 0;
}
