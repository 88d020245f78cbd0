// The figure: a canvas of a given size in inches and dpi, holding one axes.
#include "figure_detail.hpp"

#include <cmath>
#include <memory>

namespace attnpool::render {

using detail::finite;

figure::figure(double width_in, double height_in, double dpi) : dpi_(dpi) {
  ATTNPOOL_EXPECTS(finite(width_in) && finite(height_in) && finite(dpi) && width_in > 0 &&
                       height_in > 0 && dpi > 0,
                   "figure: width, height and dpi must be finite and > 0, got ", width_in, " x ",
                   height_in, " in at ", dpi, " dpi");
  const double w = std::round(width_in * dpi), h = std::round(height_in * dpi);
  ATTNPOOL_EXPECTS(w >= 1 && h >= 1 && w <= 16384 && h <= 16384,
                   "figure: the canvas must be 1..16384 px on each side, got ", w, " x ", h);
  width_px_ = static_cast<int>(w);
  height_px_ = static_cast<int>(h);
}

axes& figure::add_subplot() {
  if (!axes_) axes_.reset(new axes());
  return *axes_;
}

image figure::render() const {
  image img(width_px_, height_px_, kWhite);
  canvas cv(img.view());
  if (axes_) {
    const std::shared_ptr<const font> f = font_ ? font_ : font::default_font();
    detail::paint_axes(*axes_, cv, *f, dpi_, width_px_, height_px_);
  }
  return img;
}

void figure::save_png(const std::filesystem::path& path) const {
  render::save_png(render(), path);
}

}  // namespace attnpool::render
