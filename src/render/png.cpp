// PNG output: stb_image_write, compiled into this translation unit only (STB_IMAGE_WRITE_STATIC).
#include <attnpool/render.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

namespace attnpool::render {
namespace {

[[noreturn]] void throw_write_error(const std::filesystem::path& path, int err) {
  throw error(detail::concat("save_png: cannot write '", path.string(), "': ", std::strerror(err)));
}

// Writes bytes to path in place. On a failed write (ENOSPC, EFBIG under a file-size limit with
// SIGXFSZ ignored or handled, EIO at close) no truncated PNG is left: the regular file is
// removed, or emptied where it was reached through a symbolic link (the link stays a link).
// The directory entry is removed only if it still names the file written, so a file put there
// meanwhile is never deleted. Devices and pipes (/dev/full, /dev/stdout) are only reported.
void write_file(const std::filesystem::path& path, const unsigned char* bytes, std::size_t len) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw_write_error(path, errno);
  int err = 0;
  for (std::size_t done = 0; done < len && err == 0;) {
    const ssize_t n = ::write(fd, bytes + done, len - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n == 0) {
      err = EIO;  // no progress and no errno: do not spin
    } else if (errno != EINTR) {
      err = errno;
    }
  }
  struct stat written {};
  const bool regular = ::fstat(fd, &written) == 0 && S_ISREG(written.st_mode);
  if (err != 0 && regular) static_cast<void>(::ftruncate(fd, 0));
  // close reports what a network file system defers (EIO, EDQUOT); it closes the fd even then.
  if (::close(fd) != 0 && err == 0) {
    err = errno;
    if (regular) static_cast<void>(::truncate(name.c_str(), 0));
  }
  if (err == 0) return;
  struct stat entry {};
  if (regular && ::lstat(name.c_str(), &entry) == 0 && entry.st_dev == written.st_dev &&
      entry.st_ino == written.st_ino) {
    static_cast<void>(::unlink(name.c_str()));
  }
  throw_write_error(path, err);
}

}  // namespace

void save_png(const canvas_view& view, const std::filesystem::path& path) {
  ATTNPOOL_EXPECTS(view.pixels != nullptr && view.width > 0 && view.height > 0,
                   "save_png: the image must be non-empty, got ", view.width, " x ", view.height,
                   " for '", path.string(), "'");
  ATTNPOOL_EXPECTS(view.stride >= 4 * static_cast<std::ptrdiff_t>(view.width) &&
                       view.stride <= std::numeric_limits<int>::max(),
                   "save_png: stride must be in [4 * width, INT_MAX], got ", view.stride);
  // stb_image_write's own stbi_write_png ignores what fwrite and fclose return, so a full disk
  // or a file-size limit would leave a truncated PNG and report success: the image is encoded
  // in memory and written by write_file, every step checked.
  int len = 0;
  unsigned char* png = stbi_write_png_to_mem(view.pixels, static_cast<int>(view.stride), view.width,
                                             view.height, 4, &len);
  if (png == nullptr) {
    throw error(detail::concat("save_png: cannot encode '", path.string(), "': out of memory"));
  }
  const std::unique_ptr<unsigned char, void (*)(void*)> owned(png, &std::free);
  write_file(path, png, static_cast<std::size_t>(len));
}

void save_png(const image& img, const std::filesystem::path& path) {
  canvas_view v{const_cast<std::uint8_t*>(img.data()), img.width(), img.height(),
                static_cast<std::ptrdiff_t>(img.width()) * 4};
  save_png(v, path);
}

}  // namespace attnpool::render
