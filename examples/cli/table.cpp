// read_columns: the file, whole and with a bound, then the parser its first bytes call for.
#include "table.hpp"
#include "number_text.hpp"

#include <attnpool/error.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace attnpool::cli {
namespace {

// What a file is, for a message that says why it is refused.
const char* kind_of(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

bool readable_kind(mode_t mode) noexcept {
  return S_ISREG(mode) || S_ISFIFO(mode);
}

std::string too_large(const std::string& name, std::uint64_t max_bytes) {
  return detail::concat(name, ": the file is larger than the limit of ", max_bytes,
                        " bytes on an input file; split it or use fewer rows");
}

class file_descriptor {
 public:
  explicit file_descriptor(int fd) noexcept : fd_(fd) {}
  ~file_descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_;
};

std::vector<unsigned char> read_file(const std::filesystem::path& path, const std::string& name,
                                     std::uint64_t max_bytes) {
  // stat before open: opening some devices has effects of its own (a tape rewinds, a terminal
  // becomes the controlling one), and a directory or device is refused without being opened.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw input_error(name + ": cannot open: " + std::strerror(errno));
  }
  if (!readable_kind(st.st_mode)) {
    throw input_error(name + ": cannot read: it is " + kind_of(st.st_mode) +
                      "; expected a regular file (or a pipe)");
  }
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    throw input_error(too_large(name, max_bytes));
  }
  const file_descriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) throw input_error(name + ": cannot open: " + std::strerror(errno));
  // The name may have been replaced between stat and open; what counts is what was opened.
  if (::fstat(fd.get(), &st) != 0)
    throw input_error(name + ": cannot read: " + std::strerror(errno));
  if (!readable_kind(st.st_mode)) {
    throw input_error(name + ": cannot read: it is " + kind_of(st.st_mode) +
                      "; expected a regular file (or a pipe)");
  }
  std::vector<unsigned char> bytes;
  try {
    // A regular file's size is known, but may change, and files in /proc report 0: read to the
    // end, growing past the size only when there is more, never past max_bytes + 1.
    std::size_t size = S_ISREG(st.st_mode) ? static_cast<std::size_t>(st.st_size) + 1 : 0;
    size = std::max<std::size_t>(size, std::size_t{1} << 16);
    bytes.resize(static_cast<std::size_t>(std::min<std::uint64_t>(size, max_bytes + 1)));
    std::size_t used = 0;
    for (;;) {
      if (used == bytes.size()) {
        if (used > max_bytes) throw input_error(too_large(name, max_bytes));
        bytes.resize(static_cast<std::size_t>(std::min<std::uint64_t>(2 * used, max_bytes + 1)));
      }
      const ssize_t got = ::read(fd.get(), bytes.data() + used, bytes.size() - used);
      if (got < 0) {
        if (errno == EINTR) continue;
        throw input_error(name + ": read error: " + std::strerror(errno));
      }
      if (got == 0) break;
      used += static_cast<std::size_t>(got);
    }
    if (used > max_bytes) throw input_error(too_large(name, max_bytes));
    bytes.resize(used);
  } catch (const std::bad_alloc&) {
    throw input_error(detail::concat(name, ": not enough memory to read the file (",
                                     S_ISREG(st.st_mode) ? std::to_string(st.st_size) : "a pipe",
                                     S_ISREG(st.st_mode) ? " bytes)" : ")"));
  }
  return bytes;
}

}  // namespace

numeric_table read_columns(const std::filesystem::path& path, std::span<const std::string> names,
                           std::uint64_t max_bytes) {
  // The path comes from the user, but may hold any byte; messages show it escaped.
  const std::string source = printable(path.string(), 4096);
  const std::vector<unsigned char> bytes = read_file(path, source, max_bytes);
  const bool npy_magic = bytes.size() >= 6 && std::memcmp(bytes.data(), "\x93NUMPY", 6) == 0;
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  try {
    if (npy_magic || ext == ".npy") return parse_npy(bytes, source, names);
    return parse_csv(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                     source, names);
  } catch (const std::bad_alloc&) {
    throw input_error(source + ": not enough memory for the values it holds");
  }
}

}  // namespace attnpool::cli
