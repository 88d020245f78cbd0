// PNG output: stb_image_write, compiled into this translation unit only (STB_IMAGE_WRITE_STATIC).
#include <attnpool/render.hpp>

#include <cerrno>
#include <cstring>
#include <limits>

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
  errno = 0;
  // stb_image_write returns 0 on any failure (fopen, allocation, write).
  const int ok = stbi_write_png(path.string().c_str(), view.width, view.height, 4, view.pixels,
                                static_cast<int>(view.stride));
  if (ok == 0) {
    const int err = errno;
    throw error(detail::concat("save_png: cannot write '", path.string(), "'", err != 0 ? ": " : "",
                               err != 0 ? std::strerror(err) : ""));
  }
}

void save_png(const image& img, const std::filesystem::path& path) {
  canvas_view v{const_cast<std::uint8_t*>(img.data()), img.width(), img.height(),
                static_cast<std::ptrdiff_t>(img.width()) * 4};
  save_png(v, path);
}

}  // namespace attnpool::render
