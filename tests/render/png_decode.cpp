#include <png_decode.hpp>

#include <cstring>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

namespace render_test {

std::optional<attnpool::render::image> load_png(const std::filesystem::path& path) {
  int w = 0, h = 0, channels = 0;
  unsigned char* data = stbi_load(path.string().c_str(), &w, &h, &channels, 4);
  if (data == nullptr) return std::nullopt;
  attnpool::render::image img(w, h);
  std::memcpy(img.view().pixels, data,
              static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 4);
  stbi_image_free(data);
  return img;
}

}  // namespace render_test
