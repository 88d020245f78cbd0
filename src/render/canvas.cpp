// The canvas: clipping, blending and the geometric primitives. Every primitive computes a
// bounding box, asks clip_bounds() for the pixels it may touch, computes a coverage per pixel
// and hands it to blend(); nothing else writes pixels.
#include <attnpool/render.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnpool::render {
namespace {

float clamp01(double v) noexcept {
  return static_cast<float>(std::clamp(v, 0.0, 1.0));
}

// Coverage of pixel [i, i+1) by the interval [lo, hi).
double overlap(int i, double lo, double hi) noexcept {
  return std::clamp(std::min(hi, i + 1.0) - std::max(lo, static_cast<double>(i)), 0.0, 1.0);
}

// Distance from p to segment ab.
double segment_distance(double px, double py, point a, point b) noexcept {
  const double dx = b.x - a.x;
  const double dy = b.y - a.y;
  const double len2 = dx * dx + dy * dy;
  double t = 0;
  if (len2 > 0) t = std::clamp(((px - a.x) * dx + (py - a.y) * dy) / len2, 0.0, 1.0);
  const double ex = px - (a.x + t * dx);
  const double ey = py - (a.y + t * dy);
  return std::sqrt(ex * ex + ey * ey);
}

// Coverage of a pixel whose centre lies `d` pixels from the centre line of a stroke `width`
// wide: the fraction of a unit-wide pixel column inside the stroke. Strokes thinner than a
// pixel are drawn one pixel wide at proportionally lower opacity, which keeps them from
// vanishing between pixel centres.
float stroke_coverage(double d, double width) noexcept {
  if (width >= 1.0) return clamp01(width / 2 + 0.5 - d);
  return static_cast<float>(width) * clamp01(1.0 - d);
}

bool finite(point p) noexcept {
  return std::isfinite(p.x) && std::isfinite(p.y);
}

}  // namespace

image::image(int width, int height, color fill) {
  ATTNPOOL_EXPECTS(width >= 0 && height >= 0, "image: width and height must be >= 0, got ", width,
                   " x ", height);
  ATTNPOOL_EXPECTS(
      static_cast<std::size_t>(width) * static_cast<std::size_t>(height) <= (std::size_t{1} << 30),
      "image: ", width, " x ", height, " pixels is too large");
  width_ = width;
  height_ = height;
  pixels_.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 4);
  for (std::size_t i = 0; i < pixels_.size(); i += 4) {
    pixels_[i] = fill.r;
    pixels_[i + 1] = fill.g;
    pixels_[i + 2] = fill.b;
    pixels_[i + 3] = fill.a;
  }
}

canvas::canvas(canvas_view target) : view_(target) {
  ATTNPOOL_EXPECTS(target.width >= 0 && target.height >= 0,
                   "canvas: width and height must be "
                   ">= 0, got ",
                   target.width, " x ", target.height);
  ATTNPOOL_EXPECTS(target.pixels != nullptr || target.width == 0 || target.height == 0,
                   "canvas: pixels must not be null for a ", target.width, " x ", target.height,
                   " view");
  ATTNPOOL_EXPECTS(target.stride >= 4 * static_cast<std::ptrdiff_t>(target.width),
                   "canvas: stride must be >= 4 * width = ", 4 * target.width, ", got ",
                   target.stride);
  reset_clip();
}

void canvas::reset_clip() noexcept {
  clip_ = {0, 0, static_cast<double>(view_.width), static_cast<double>(view_.height)};
}

void canvas::set_clip(rect r) noexcept {
  reset_clip();
  if (!(std::isfinite(r.x0) && std::isfinite(r.y0) && std::isfinite(r.x1) && std::isfinite(r.y1))) {
    clip_ = {0, 0, 0, 0};
    return;
  }
  clip_.x0 = std::max(clip_.x0, r.x0);
  clip_.y0 = std::max(clip_.y0, r.y0);
  clip_.x1 = std::max(clip_.x0, std::min(clip_.x1, r.x1));
  clip_.y1 = std::max(clip_.y0, std::min(clip_.y1, r.y1));
}

canvas::pixel_span canvas::clip_bounds(rect b) const noexcept {
  // NaN bounds compare false everywhere and fall through to an empty span.
  const double x0 = std::max(b.x0, clip_.x0);
  const double y0 = std::max(b.y0, clip_.y0);
  const double x1 = std::min(b.x1, clip_.x1);
  const double y1 = std::min(b.y1, clip_.y1);
  if (!(x0 < x1 && y0 < y1)) return {0, 0, 0, 0};
  // clip_ lies inside [0, width] x [0, height], so the casts cannot overflow.
  return {static_cast<int>(std::floor(x0)), static_cast<int>(std::floor(y0)),
          static_cast<int>(std::ceil(x1)), static_cast<int>(std::ceil(y1))};
}

void canvas::blend(int x, int y, color c, float coverage) noexcept {
  // Partial pixels along a fractional clip edge get the clip's coverage too.
  if (x < clip_.x0 + 1 || x + 1 > clip_.x1 || y < clip_.y0 + 1 || y + 1 > clip_.y1) {
    coverage *= static_cast<float>(overlap(x, clip_.x0, clip_.x1) * overlap(y, clip_.y0, clip_.y1));
  }
  const float a = coverage * (static_cast<float>(c.a) / 255.0f);
  if (!(a > 0.0f)) return;
  std::uint8_t* p = view_.pixels + y * view_.stride + 4 * static_cast<std::ptrdiff_t>(x);
  if (a >= 1.0f) {
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
    p[3] = 255;
    return;
  }
  // Source-over on straight (non-premultiplied) alpha.
  const float da = static_cast<float>(p[3]) / 255.0f;
  const float oa = a + da * (1.0f - a);
  const auto mix = [&](std::uint8_t s, std::uint8_t d) {
    const float v = (static_cast<float>(s) * a + static_cast<float>(d) * da * (1.0f - a)) / oa;
    return static_cast<std::uint8_t>(std::clamp(v + 0.5f, 0.0f, 255.0f));
  };
  p[0] = mix(c.r, p[0]);
  p[1] = mix(c.g, p[1]);
  p[2] = mix(c.b, p[2]);
  p[3] = static_cast<std::uint8_t>(std::clamp(oa * 255.0f + 0.5f, 0.0f, 255.0f));
}

void canvas::fill(color c) {
  fill_rect(clip_, c);
}

void canvas::fill_rect(rect r, color c) {
  const pixel_span s = clip_bounds(r);
  for (int y = s.y0; y < s.y1; ++y) {
    const double cy = overlap(y, r.y0, r.y1);
    for (int x = s.x0; x < s.x1; ++x)
      blend(x, y, c, static_cast<float>(cy * overlap(x, r.x0, r.x1)));
  }
}

void canvas::stroke_rect(rect r, double w, color c) {
  if (!(w > 0)) return;
  const double h = w / 2;
  // Four bands that do not overlap, so a translucent outline is blended once per pixel.
  fill_rect({r.x0 - h, r.y0 - h, r.x1 + h, r.y0 + h}, c);
  fill_rect({r.x0 - h, r.y1 - h, r.x1 + h, r.y1 + h}, c);
  fill_rect({r.x0 - h, r.y0 + h, r.x0 + h, r.y1 - h}, c);
  fill_rect({r.x1 - h, r.y0 + h, r.x1 + h, r.y1 - h}, c);
}

void canvas::line(point a, point b, double width, color c) {
  const point pts[2] = {a, b};
  polyline(pts, width, c);
}

void canvas::polyline(std::span<const point> pts, double width, color c) {
  if (!(width > 0) || pts.empty()) return;
  const double reach = std::max(width, 1.0) / 2 + 1.0;
  rect bounds{std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(),
              -std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  for (const point& p : pts) {
    if (!finite(p)) continue;
    bounds = {std::min(bounds.x0, p.x - reach), std::min(bounds.y0, p.y - reach),
              std::max(bounds.x1, p.x + reach), std::max(bounds.y1, p.y + reach)};
  }
  const pixel_span s = clip_bounds(bounds);
  if (s.empty()) return;
  // The union of the segments' coverages is their maximum per pixel; it is gathered into a
  // mask first so that each pixel is blended once. Bands of rows bound the mask's memory.
  constexpr int kBandRows = 64;
  const int w = s.x1 - s.x0;
  scratch_.resize(static_cast<std::size_t>(w) * kBandRows);
  for (int band = s.y0; band < s.y1; band += kBandRows) {
    const int band_end = std::min(band + kBandRows, s.y1);
    std::fill(scratch_.begin(), scratch_.end(), 0.0f);
    bool any = false;
    // A single point is a zero-length segment: a dot as wide as the line.
    const std::size_t segments = pts.size() == 1 ? 1 : pts.size() - 1;
    for (std::size_t k = 0; k < segments; ++k) {
      const point a = pts[k];
      const point b = pts[pts.size() == 1 ? k : k + 1];
      if (!finite(a) || !finite(b)) continue;
      const int x0 = std::max(s.x0, static_cast<int>(std::floor(std::min(a.x, b.x) - reach)));
      const int x1 = std::min(s.x1, static_cast<int>(std::ceil(std::max(a.x, b.x) + reach)));
      const int y0 = std::max(band, static_cast<int>(std::floor(std::min(a.y, b.y) - reach)));
      const int y1 = std::min(band_end, static_cast<int>(std::ceil(std::max(a.y, b.y) + reach)));
      for (int y = y0; y < y1; ++y) {
        float* row = scratch_.data() + static_cast<std::size_t>(y - band) * w - s.x0;
        for (int x = x0; x < x1; ++x) {
          const float cov = stroke_coverage(segment_distance(x + 0.5, y + 0.5, a, b), width);
          if (cov > row[x]) {
            row[x] = cov;
            any = true;
          }
        }
      }
    }
    if (!any) continue;
    for (int y = band; y < band_end; ++y) {
      const float* row = scratch_.data() + static_cast<std::size_t>(y - band) * w - s.x0;
      for (int x = s.x0; x < s.x1; ++x) {
        if (row[x] > 0.0f) blend(x, y, c, row[x]);
      }
    }
  }
}

void canvas::fill_circle(point centre, double radius, color c) {
  if (!(radius > 0) || !finite(centre)) return;
  const double reach = radius + 1.0;
  const pixel_span s =
      clip_bounds({centre.x - reach, centre.y - reach, centre.x + reach, centre.y + reach});
  for (int y = s.y0; y < s.y1; ++y) {
    for (int x = s.x0; x < s.x1; ++x) {
      const double dx = x + 0.5 - centre.x;
      const double dy = y + 0.5 - centre.y;
      const float cov = radius >= 0.5 ? clamp01(radius + 0.5 - std::sqrt(dx * dx + dy * dy))
                                      : stroke_coverage(std::sqrt(dx * dx + dy * dy), 2 * radius);
      if (cov > 0.0f) blend(x, y, c, cov);
    }
  }
}

void draw_matrix(canvas& cv, const_view m, rect dest, const colormap& cmap, double vmin,
                 double vmax) {
  ATTNPOOL_EXPECTS(m.data != nullptr && m.rows > 0 && m.cols > 0 && m.ld >= m.cols,
                   "draw_matrix: matrix must be non-empty with ld >= cols, got ", m.rows, " x ",
                   m.cols, " ld ", m.ld);
  ATTNPOOL_EXPECTS(std::isfinite(vmin) && std::isfinite(vmax) && vmin <= vmax,
                   "draw_matrix: need finite vmin <= vmax, got ", vmin, ", ", vmax);
  const canvas::pixel_span s = cv.clip_bounds(dest);
  if (s.empty() || !(dest.width() > 0) || !(dest.height() > 0)) return;
  // Nearest-neighbour resampling, as matplotlib's image pipeline does when it magnifies: the
  // cell under each pixel centre. The column of every output x is computed once.
  const double cw = dest.width() / static_cast<double>(m.cols);
  const double ch = dest.height() / static_cast<double>(m.rows);
  std::vector<std::ptrdiff_t> col(static_cast<std::size_t>(s.x1 - s.x0));
  for (int x = s.x0; x < s.x1; ++x) {
    const double j = std::floor((x + 0.5 - dest.x0) / cw);
    col[static_cast<std::size_t>(x - s.x0)] =
        (j >= 0 && j < static_cast<double>(m.cols)) ? static_cast<std::ptrdiff_t>(j) : -1;
  }
  // matplotlib's Normalize maps vmin == vmax to 0.
  const double scale = vmax > vmin ? 1.0 / (vmax - vmin) : 0.0;
  for (int y = s.y0; y < s.y1; ++y) {
    const double i = std::floor((y + 0.5 - dest.y0) / ch);
    if (i < 0 || i >= static_cast<double>(m.rows)) continue;
    const float* row = m.row(static_cast<std::size_t>(i));
    for (int x = s.x0; x < s.x1; ++x) {
      const std::ptrdiff_t j = col[static_cast<std::size_t>(x - s.x0)];
      if (j < 0) continue;
      const double v = row[j];
      if (std::isnan(v)) continue;
      cv.blend(x, y, cmap((v - vmin) * scale), 1.0f);
    }
  }
}

}  // namespace attnpool::render
