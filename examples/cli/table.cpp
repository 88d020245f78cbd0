// read_columns: the file, whole, then the parser its first bytes call for.
#include "table.hpp"

#include <attnpool/error.hpp>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace attnpool::cli {
namespace {

struct file_closer {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

std::vector<unsigned char> read_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw input_error(name + ": cannot read: it is a directory");
  }
  const std::unique_ptr<std::FILE, file_closer> f(std::fopen(name.c_str(), "rb"));
  if (!f) throw input_error(name + ": cannot open: " + std::strerror(errno));
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  for (;;) {
    const std::size_t got = std::fread(buf, 1, sizeof buf, f.get());
    bytes.insert(bytes.end(), buf, buf + got);
    if (got < sizeof buf) break;
  }
  if (std::ferror(f.get())) throw input_error(name + ": read error: " + std::strerror(errno));
  return bytes;
}

}  // namespace

numeric_table read_columns(const std::filesystem::path& path, std::span<const std::string> names) {
  const std::vector<unsigned char> bytes = read_file(path);
  const std::string source = path.string();
  const bool npy_magic = bytes.size() >= 6 && std::memcmp(bytes.data(), "\x93NUMPY", 6) == 0;
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (npy_magic || ext == ".npy") return parse_npy(bytes, source, names);
  return parse_csv(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                   source, names);
}

}  // namespace attnpool::cli
