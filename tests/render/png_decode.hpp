// Test helper: reads a PNG back into an attnpool::render::image (stb_image).
#pragma once

#include <attnpool/render.hpp>

#include <filesystem>
#include <optional>

namespace render_test {

/// The decoded RGBA image, or nothing when the file is missing or not a PNG.
std::optional<attnpool::render::image> load_png(const std::filesystem::path& path);

}  // namespace render_test
