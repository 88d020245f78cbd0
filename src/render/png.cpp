// PNG output: stb_image_write, compiled into this translation unit only (STB_IMAGE_WRITE_STATIC).
#include <attnpool/render.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

namespace attnpool::render {

void save_png(const canvas_view& view, const std::filesystem::path& path) {
  ATTNPOOL_EXPECTS(view.pixels != nullptr && view.width > 0 && view.height > 0,
                   "save_png: the image must be non-empty, got ", view.width, " x ", view.height,
                   " for '", path.string(), "'");
  ATTNPOOL_EXPECTS(view.stride >= 4 * static_cast<std::ptrdiff_t>(view.width) &&
                       view.stride <= std::numeric_limits<int>::max(),
                   "save_png: stride must be in [4 * width, INT_MAX], got ", view.stride);
  // stb_image_write's own stbi_write_png ignores what fwrite and fclose return, so a full disk
  // or a file-size limit would leave a truncated PNG and report success: the image is encoded
  // in memory and written here, every step checked.
  int len = 0;
  unsigned char* png = stbi_write_png_to_mem(view.pixels, static_cast<int>(view.stride),
                                             view.width, view.height, 4, &len);
  if (png == nullptr) {
    throw error(detail::concat("save_png: cannot encode '", path.string(), "': out of memory"));
  }
  const std::unique_ptr<unsigned char, void (*)(void*)> owned(png, &std::free);
  std::FILE* f = std::fopen(path.string().c_str(), "wb");
  if (f == nullptr) {
    throw error(detail::concat("save_png: cannot write '", path.string(), "': ",
                               std::strerror(errno)));
  }
  const std::size_t wrote = std::fwrite(png, 1, static_cast<std::size_t>(len), f);
  const int write_err = errno;
  const bool flushed = std::fflush(f) == 0;
  const int flush_err = errno;
  const bool closed = std::fclose(f) == 0;
  if (wrote != static_cast<std::size_t>(len) || !flushed || !closed) {
    const int err = wrote != static_cast<std::size_t>(len) ? write_err
                    : !flushed                             ? flush_err
                                                           : errno;
    throw error(detail::concat("save_png: cannot write '", path.string(), "': ",
                               std::strerror(err)));
  }
}

void save_png(const image& img, const std::filesystem::path& path) {
  canvas_view v{const_cast<std::uint8_t*>(img.data()), img.width(), img.height(),
                static_cast<std::ptrdiff_t>(img.width()) * 4};
  save_png(v, path);
}

}  // namespace attnpool::render
