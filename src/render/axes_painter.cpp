// The painting of one axes: limits, ticks, series, spines, labels, legend and colorbar, following
// matplotlib's defaults (rcParams of matplotlib 3.x) so that the output stands beside
// matplotlib's. Sizes in points are converted with dpi / 72 pixels per point.
#include "figure_detail.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace attnpool::render {
namespace {

using detail::finite;
using detail::format_ticks;
using detail::log_label;
using detail::log_locator;
using detail::max_n_locator;
using detail::multiple_locator;

// ---- matplotlib's defaults (rcParams), in points ------------------------------------------------
constexpr double kFontPt = 10.0;       // font.size
constexpr double kTitlePt = 12.0;      // axes.titlesize 'large' = 1.2 * font.size
constexpr double kTitlePadPt = 6.0;    // axes.titlepad
constexpr double kLabelPadPt = 4.0;    // axes.labelpad
constexpr double kSpinePt = 0.8;       // axes.linewidth
constexpr double kTickLenPt = 3.5;     // xtick.major.size
constexpr double kTickWidthPt = 0.8;   // xtick.major.width
constexpr double kTickPadPt = 3.5;     // xtick.major.pad
constexpr double kMinorLenPt = 2.0;    // xtick.minor.size
constexpr double kMinorWidthPt = 0.6;  // xtick.minor.width
constexpr double kMargin = 0.05;       // axes.xmargin / axes.ymargin
constexpr double kLeft = 0.125, kRight = 0.9, kBottom = 0.11, kTop = 0.88;  // figure.subplot.*

// Pixel snapping as matplotlib's Agg PathSnapper: an axis-aligned stroke of odd (rounded) pixel
// width is centred on a pixel centre, of even width on a pixel edge, so spines and ticks are
// crisp instead of smeared over two half-covered pixels.
double snap(double v, double width_px) noexcept {
  const bool odd = static_cast<long>(std::lround(width_px)) % 2 != 0;
  return std::floor(v + 0.5) + (odd ? 0.5 : 0.0);
}

struct tick {
  double value;
  std::string label;   // empty: mark only
  bool minor = false;  // drawn with the minor tick size and width
};

// Source-over of a rounded rectangle: fill, then an outline of width `lw` centred on its edge.
void round_rect(canvas& cv, rect r, double radius, color fill, double lw, color edge) {
  const double reach = lw / 2 + 1;
  const canvas::pixel_span s =
      cv.clip_bounds({r.x0 - reach, r.y0 - reach, r.x1 + reach, r.y1 + reach});
  const double cx = (r.x0 + r.x1) / 2, cy = (r.y0 + r.y1) / 2;
  const double hx = r.width() / 2 - radius, hy = r.height() / 2 - radius;
  for (int y = s.y0; y < s.y1; ++y) {
    for (int x = s.x0; x < s.x1; ++x) {
      const double qx = std::abs(x + 0.5 - cx) - hx, qy = std::abs(y + 0.5 - cy) - hy;
      const double outside = std::hypot(std::max(qx, 0.0), std::max(qy, 0.0));
      const double sd = outside + std::min(std::max(qx, qy), 0.0) - radius;  // signed distance
      const auto fc = static_cast<float>(std::clamp(0.5 - sd, 0.0, 1.0));
      if (fc > 0) cv.blend(x, y, fill, fc);
      const auto ec = static_cast<float>(std::clamp(lw / 2 + 0.5 - std::abs(sd), 0.0, 1.0));
      if (ec > 0 && lw > 0) cv.blend(x, y, edge, ec);
    }
  }
}

// Text turned 90 degrees counter-clockwise (read bottom to top), as matplotlib's y label: the
// text's bottom edge (its descent line) lies on x = anchor.x and its centre at y = anchor.y.
// Returns the covered box.
rect vertical_text(canvas& cv, const font& f, std::string_view str, point anchor, double size_px,
                   color c) {
  if (str.empty()) return {};
  const text_extent e = measure_text(f, str, size_px);
  const int tw = static_cast<int>(std::ceil(e.width())) + 4;
  const int th = static_cast<int>(std::ceil(e.height())) + 4;
  image tmp(tw, th, kTransparent);
  canvas tc(tmp.view());
  const int cx = tw / 2, by = th - 2;
  tc.text(f, str, {static_cast<double>(cx), static_cast<double>(by)}, size_px, {c.r, c.g, c.b, 255},
          h_align::center, v_align::bottom);
  const int ax = static_cast<int>(std::lround(anchor.x)),
            ay = static_cast<int>(std::lround(anchor.y));
  // Temp pixel (u, v) lands on (ax + v - by, ay - u - 1 + cx).
  const canvas::pixel_span s =
      cv.clip_bounds({static_cast<double>(ax - by), static_cast<double>(ay - tw + cx),
                      static_cast<double>(ax - by + th), static_cast<double>(ay + cx)});
  for (int y = s.y0; y < s.y1; ++y) {
    for (int x = s.x0; x < s.x1; ++x) {
      const int u = ay - 1 + cx - y, v = x - ax + by;
      if (u < 0 || u >= tw || v < 0 || v >= th) continue;
      const color p = tmp.at(u, v);
      if (p.a != 0) cv.blend(x, y, c, static_cast<float>(p.a) / 255.0f);
    }
  }
  return {anchor.x - e.height(), anchor.y - e.width() / 2, anchor.x, anchor.y + e.width() / 2};
}

rect unite(rect a, rect b) {
  if (a.width() <= 0 && a.height() <= 0) return b;
  if (b.width() <= 0 && b.height() <= 0) return a;
  return {std::min(a.x0, b.x0), std::min(a.y0, b.y0), std::max(a.x1, b.x1), std::max(a.y1, b.y1)};
}

}  // namespace

// In attnpool::render, not detail: axes befriends attnpool::render::axes_painter.
class axes_painter {
 public:
  axes_painter(const axes& ax, canvas& cv, const font& f, double dpi, int w, int h)
      : ax_(ax), cv_(cv), f_(f), pt_(dpi / 72.0), dpi_(dpi), fig_w_(w), fig_h_(h) {}

  void paint();

 private:
  const axes& ax_;
  canvas& cv_;
  const font& f_;
  double pt_;  // pixels per point
  double dpi_;
  int fig_w_, fig_h_;
  rect box_{};              // the axes in pixels
  double x0_ = 0, x1_ = 1;  // x limits: left, right (log10 of them on a log axis)
  double yb_ = 0, yt_ = 1;  // y limits: bottom, top
  bool xlog_ = ax_.xscale_ == axis_scale::log;

  // x data to the linear coordinate that x0_ and x1_ are in.
  [[nodiscard]] double tx(double x) const { return xlog_ ? std::log10(x) : x; }
  [[nodiscard]] double px(double x) const {
    return box_.x0 + (tx(x) - x0_) / (x1_ - x0_) * box_.width();
  }
  [[nodiscard]] double py(double y) const {
    return box_.y1 - (y - yb_) / (yt_ - yb_) * box_.height();
  }
  [[nodiscard]] double fs() const { return kFontPt * pt_; }

  void limits();
  std::vector<tick> ticks(const tick_spec& spec, double lo, double hi, bool x_axis, bool is_matrix,
                          double length_px) const;
  void thin(std::vector<tick>& t, const tick_spec& spec, bool x_axis, double spacing_px) const;
  std::vector<tick> log_ticks(const tick_spec& spec, double length_px) const;
  void draw_series();
  void draw_spines(rect b);
  rect draw_ticks(const std::vector<tick>& t, bool x_axis, bool far_side, bool labels, rect b,
                  double lo, double hi, bool log = false);
  void draw_legend();
  void draw_colorbar(rect b);
};

void axes_painter::limits() {
  if (ax_.matrix_) {
    x0_ = -0.5;
    x1_ = static_cast<double>(ax_.matrix_->cols) - 0.5;
    yb_ = static_cast<double>(ax_.matrix_->rows) - 0.5;  // row 0 on top
    yt_ = -0.5;
  } else {
    double xl = std::numeric_limits<double>::infinity(), xh = -xl, yl = xl, yh = -xl;
    for (const auto& s : ax_.series_) {
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if (!finite(s.x[i]) || !finite(s.y[i])) continue;
        // On a log axis the limits and margins are worked out in log10 space, as matplotlib
        // applies its margins in the transformed coordinates.
        xl = std::min(xl, tx(s.x[i]));
        xh = std::max(xh, tx(s.x[i]));
        yl = std::min(yl, s.y[i]);
        yh = std::max(yh, s.y[i]);
      }
    }
    const auto expand = [](double& lo, double& hi) {
      if (!(lo <= hi)) {  // no data: matplotlib's empty axes show [0, 1]
        lo = 0;
        hi = 1;
        return;
      }
      if (lo == hi) {  // matplotlib's nonsingular(): widen a single value by 5 %
        const double d = lo == 0 ? 0.05 : 0.05 * std::abs(lo);
        lo -= d;
        hi += d;
      }
      const double m = kMargin * (hi - lo);
      lo -= m;
      hi += m;
    };
    if (!xlog_) {
      expand(xl, xh);
    } else if (!(xl <= xh)) {
      xl = 0;  // no data: empty log axes show [1, 10]
      xh = 1;
    } else {
      if (xl == xh) {
        // LogLocator.nonsingular: a single value widens to the powers of ten strictly around
        // it, before the margins.
        const double d = std::floor(xl), u = std::ceil(xh);
        xl = d == xl ? d - 1 : d;
        xh = u == xh ? xh + 1 : u;
      }
      expand(xl, xh);
    }
    expand(yl, yh);
    x0_ = xl;
    x1_ = xh;
    yb_ = yl;
    yt_ = yh;
  }
  if (ax_.xlim_) {
    x0_ = tx((*ax_.xlim_)[0]);
    x1_ = tx((*ax_.xlim_)[1]);
  }
  if (ax_.ylim_) {
    yb_ = (*ax_.ylim_)[0];
    yt_ = (*ax_.ylim_)[1];
  }
}

std::vector<tick> axes_painter::ticks(const tick_spec& spec, double lo, double hi, bool x_axis,
                                      bool is_matrix, double length_px) const {
  std::vector<double> pos;
  const double vmin = std::min(lo, hi), vmax = std::max(lo, hi);
  const double eps = 1e-10 * (vmax - vmin);
  if (!spec.positions.empty()) {
    pos = spec.positions;
  } else if (spec.step > 0) {
    pos = multiple_locator(vmin, vmax, spec.step);
  } else if (is_matrix) {
    // matshow's locator: MaxNLocator(nbins=9, steps=[1, 2, 5, 10], integer=True).
    pos = max_n_locator(vmin, vmax, 9, {1, 2, 5, 10}, true);
  } else {
    // AutoLocator: MaxNLocator(nbins='auto', steps=[1, 2, 2.5, 5, 10]); 'auto' is the axis
    // length over 3 (x) or 2 (y) label font sizes, clipped to [1, 9].
    const double length_pt = length_px / dpi_ * 72.0;
    const int nbins =
        std::clamp(static_cast<int>(std::floor(length_pt / (kFontPt * (x_axis ? 3 : 2)))), 1, 9);
    pos = max_n_locator(vmin, vmax, nbins, {1, 2, 2.5, 5, 10}, false);
  }
  std::vector<tick> out;
  std::vector<double> shown;
  for (std::size_t k = 0; k < pos.size(); ++k) {
    if (pos[k] < vmin - eps || pos[k] > vmax + eps) continue;
    std::string label;
    if (!spec.labels.empty()) {
      // Explicit positions: label k. Multiples of a step: labels in order from the first shown.
      const std::size_t idx = spec.positions.empty() ? out.size() : k;
      if (idx < spec.labels.size()) label = spec.labels[idx];
    }
    out.push_back({pos[k], std::move(label)});
    shown.push_back(pos[k]);
  }
  if (spec.labels.empty()) {
    const std::vector<std::string> text = format_ticks(shown);
    for (std::size_t k = 0; k < out.size(); ++k) out[k].label = text[k];
  }
  if (spec.thin_labels && out.size() > 1) {
    const double spacing = std::abs(length_px / (hi - lo) * (out[1].value - out[0].value));
    thin(out, spec, x_axis, spacing);
  }
  return out;
}

std::vector<tick> axes_painter::log_ticks(const tick_spec& spec, double length_px) const {
  const double vmin = std::pow(10.0, std::min(x0_, x1_)), vmax = std::pow(10.0, std::max(x0_, x1_));
  std::vector<tick> out;
  if (!spec.positions.empty()) {
    for (std::size_t k = 0; k < spec.positions.size(); ++k) {
      const double v = spec.positions[k];
      if (!(v >= vmin * (1 - 1e-10) && v <= vmax * (1 + 1e-10))) continue;
      out.push_back({v, k < spec.labels.size() ? spec.labels[k] : log_label(v)});
    }
    return out;
  }
  // LogLocator's numticks 'auto': the axis' tick space (as for the linear x axis), in [2, 9].
  const double length_pt = length_px / dpi_ * 72.0;
  const int numticks = std::clamp(static_cast<int>(std::floor(length_pt / (kFontPt * 3))), 2, 9);
  std::vector<double> major, minor;
  log_locator(vmin, vmax, numticks, major, minor);
  for (const double v : major) out.push_back({v, log_label(v)});
  // Under two decades in view the decades alone do not show the scale: label the minor ticks too
  // (matplotlib's LogFormatter does so below its minor_thresholds), left to right, skipping
  // any label that would come within half an em of one already kept or of a decade label.
  const bool label_minor = major.size() < 2;
  std::vector<std::array<double, 2>> taken;  // label extents along the axis, in pixels
  const auto extent = [&](double v, const std::string& label) {
    const double c = px(v);
    const double half = measure_text(f_, label, fs()).width() / 2 + 0.25 * fs();
    return std::array<double, 2>{c - half, c + half};
  };
  if (label_minor) {
    for (const tick& t : out) taken.push_back(extent(t.value, t.label));
  }
  for (const double v : minor) {
    std::string label;
    if (label_minor) {
      std::string text = log_label(v);
      const auto e = extent(v, text);
      const bool clear = std::none_of(taken.begin(), taken.end(),
                                      [&](const auto& o) { return e[0] < o[1] && o[0] < e[1]; });
      if (clear) {
        taken.push_back(e);
        label = std::move(text);
      }
    }
    out.push_back({v, std::move(label), true});
  }
  return out;
}

void axes_painter::thin(std::vector<tick>& t, const tick_spec& spec, bool x_axis,
                        double spacing_px) const {
  // Labels need their own extent plus half an em of air between neighbours.
  double need = 0;
  for (const tick& k : t) {
    const text_extent e = measure_text(f_, k.label, fs());
    need = std::max(need, x_axis ? e.width() : e.ascent + e.descent);
  }
  need += 0.5 * fs();
  if (spacing_px <= 0 || spacing_px >= need) return;
  const int factors[] = {2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
  int every = factors[std::size(factors) - 1];
  for (int k : factors) {
    if (spacing_px * k >= need) {
      every = k;
      break;
    }
  }
  for (std::size_t k = 0; k < t.size(); ++k) {
    // Keep labels whose tick is a multiple of `every` steps, so 0, 5, 10, ... rather than
    // whatever the first visible tick happens to be.
    const double base = spec.step > 0 ? spec.step : (t.size() > 1 ? t[1].value - t[0].value : 1);
    const auto n = static_cast<long long>(std::llround(t[k].value / base));
    if (n % every != 0) t[k].label.clear();
  }
}

void axes_painter::draw_series() {
  cv_.set_clip(box_);
  for (const auto& s : ax_.series_) {
    const color c = s.style.color.value_or(kTab10[0]);
    if (s.style.draw_line && s.style.line_width_pt > 0) {
      std::vector<point> run;
      const auto flush = [&] {
        if (run.size() >= 2) cv_.polyline(run, s.style.line_width_pt * pt_, c);
        run.clear();
      };
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if (!finite(s.x[i]) || !finite(s.y[i])) {
          flush();
          continue;
        }
        run.push_back({px(s.x[i]), py(s.y[i])});
      }
      flush();
    }
    if (s.style.marker == marker::circle) {
      // The face has the marker's diameter; the edge (same colour) is stroked on its outline.
      const double r = (s.style.marker_size_pt / 2 + s.style.marker_edge_width_pt / 2) * pt_;
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        // Agg rasterises a marker once and stamps it at whole-pixel offsets: its centre lands
        // on the centre of the nearest pixel (measured on matplotlib 3.11's output).
        if (finite(s.x[i]) && finite(s.y[i])) {
          cv_.fill_circle({std::floor(px(s.x[i]) + 0.5) + 0.5, std::floor(py(s.y[i]) + 0.5) + 0.5},
                          r, c);
        }
      }
    }
  }
  cv_.reset_clip();
}

void axes_painter::draw_spines(rect b) {
  const double w = kSpinePt * pt_;
  const double l = snap(b.x0, w), r = snap(b.x1, w), t = snap(b.y0, w), btm = snap(b.y1, w);
  const double h = w / 2;
  // Projecting caps: each spine runs half a line width past the corners, closing them.
  cv_.fill_rect({l - h, t - h, l + h, btm + h}, kBlack);
  cv_.fill_rect({r - h, t - h, r + h, btm + h}, kBlack);
  cv_.fill_rect({l + h, t - h, r - h, t + h}, kBlack);
  cv_.fill_rect({l + h, btm - h, r - h, btm + h}, kBlack);
}

// Tick marks pointing out of `b` on one side, and (optionally) their labels. Returns the box of
// the labels drawn.
rect axes_painter::draw_ticks(const std::vector<tick>& t, bool x_axis, bool far_side, bool labels,
                              rect b, double lo, double hi, bool log) {
  // Labels keep the major ticks' distance from the spine whatever the mark's size.
  const double gap = kTickLenPt * pt_ + kTickPadPt * pt_;
  rect covered{};
  for (const tick& k : t) {
    const double w = (k.minor ? kMinorWidthPt : kTickWidthPt) * pt_, h = w / 2;
    const double len = (k.minor ? kMinorLenPt : kTickLenPt) * pt_;
    if (x_axis) {
      // The mark is snapped to the pixel grid; the label is centred on the exact position.
      const double v = log ? std::log10(k.value) : k.value;
      const double xl = b.x0 + (v - lo) / (hi - lo) * b.width();
      const double x = snap(xl, w);
      const double edge = snap(far_side ? b.y0 : b.y1, w);
      const rect mark =
          far_side ? rect{x - h, edge - len, x + h, edge} : rect{x - h, edge, x + h, edge + len};
      cv_.fill_rect(mark, kBlack);
      if (labels && !k.label.empty()) {
        const rect r = far_side ? cv_.text(f_, k.label, {xl, b.y0 - gap}, fs(), kBlack,
                                           h_align::center, v_align::bottom)
                                : cv_.text(f_, k.label, {xl, b.y1 + gap}, fs(), kBlack,
                                           h_align::center, v_align::top);
        covered = unite(covered, r);
      }
    } else {
      const double yl = b.y1 - (k.value - lo) / (hi - lo) * b.height();
      const double y = snap(yl, w);
      const double edge = snap(far_side ? b.x1 : b.x0, w);
      const rect mark =
          far_side ? rect{edge, y - h, edge + len, y + h} : rect{edge - len, y - h, edge, y + h};
      cv_.fill_rect(mark, kBlack);
      if (labels && !k.label.empty()) {
        const rect r = far_side ? cv_.text(f_, k.label, {b.x1 + gap, yl}, fs(), kBlack,
                                           h_align::left, v_align::center_baseline)
                                : cv_.text(f_, k.label, {b.x0 - gap, yl}, fs(), kBlack,
                                           h_align::right, v_align::center_baseline);
        covered = unite(covered, r);
      }
    }
  }
  return covered;
}

void axes_painter::draw_legend() {
  std::vector<const axes::series*> entries;
  for (const auto& s : ax_.series_) {
    if (!s.style.label.empty()) entries.push_back(&s);
  }
  if (entries.empty()) return;
  // matplotlib's legend.* rcParams, in font sizes.
  const double f = fs(), pad = 0.4 * f, spacing = 0.5 * f, handle = 2.0 * f, text_pad = 0.8 * f,
               margin = 0.5 * f;
  double text_w = 0;
  const text_extent line_box = measure_text(f_, "lp", f);
  const double row_h = line_box.ascent + line_box.descent;
  for (const auto* s : entries)
    text_w = std::max(text_w, measure_text(f_, s->style.label, f).width());
  const double w = 2 * pad + handle + text_pad + text_w;
  const double h = 2 * pad + static_cast<double>(entries.size()) * row_h +
                   static_cast<double>(entries.size() - 1) * spacing;
  const rect corners[4] = {
      {box_.x1 - margin - w, box_.y0 + margin, box_.x1 - margin,
       box_.y0 + margin + h},  // upper right
      {box_.x0 + margin, box_.y0 + margin, box_.x0 + margin + w,
       box_.y0 + margin + h},  // upper left
      {box_.x0 + margin, box_.y1 - margin - h, box_.x0 + margin + w,
       box_.y1 - margin},  // lower left
      {box_.x1 - margin - w, box_.y1 - margin - h, box_.x1 - margin,
       box_.y1 - margin},  // lower right
  };
  std::size_t pick = 0;
  switch (*ax_.legend_) {
    case legend_loc::upper_right:
      pick = 0;
      break;
    case legend_loc::upper_left:
      pick = 1;
      break;
    case legend_loc::lower_left:
      pick = 2;
      break;
    case legend_loc::lower_right:
      pick = 3;
      break;
    case legend_loc::best: {
      // matplotlib's 'best': the candidate covering the fewest data points (first one on ties).
      std::size_t best_count = std::numeric_limits<std::size_t>::max();
      for (std::size_t c = 0; c < 4; ++c) {
        std::size_t count = 0;
        for (const auto& s : ax_.series_) {
          for (std::size_t i = 0; i < s.x.size(); ++i) {
            const double X = px(s.x[i]), Y = py(s.y[i]);
            count += (X >= corners[c].x0 && X <= corners[c].x1 && Y >= corners[c].y0 &&
                      Y <= corners[c].y1)
                         ? 1
                         : 0;
          }
        }
        if (count < best_count) {
          best_count = count;
          pick = c;
        }
      }
      break;
    }
  }
  const rect r = corners[pick];
  // legend.framealpha 0.8 on white, edge colour '0.8', patch.linewidth 1 pt, fancybox corners.
  round_rect(cv_, r, 0.2 * f, {255, 255, 255, 204}, 1.0 * pt_, {204, 204, 204, 255});
  double y = r.y0 + pad;
  for (const auto* s : entries) {
    const double yc = y + row_h / 2;
    const color c = s->style.color.value_or(kTab10[0]);
    const double hx0 = r.x0 + pad, hx1 = hx0 + handle;
    if (s->style.draw_line) {
      const point seg[2] = {{hx0, yc}, {hx1, yc}};
      cv_.polyline(seg, s->style.line_width_pt * pt_, c);
    }
    if (s->style.marker == marker::circle) {
      cv_.fill_circle({(hx0 + hx1) / 2, yc},
                      (s->style.marker_size_pt + s->style.marker_edge_width_pt) / 2 * pt_, c);
    }
    cv_.text(f_, s->style.label, {hx1 + text_pad, yc}, f, kBlack, h_align::left, v_align::center);
    y += row_h + spacing;
  }
}

void axes_painter::draw_colorbar(rect b) {
  const auto& m = *ax_.matrix_;
  const canvas::pixel_span s = cv_.clip_bounds(b);
  const double range = m.vmax - m.vmin;
  for (int y = s.y0; y < s.y1; ++y) {
    const double t = (b.y1 - (y + 0.5)) / b.height();  // 0 at the bottom, 1 at the top
    const color c = (*m.cmap)(t);
    for (int x = s.x0; x < s.x1; ++x) {
      const double cov = std::clamp(std::min(x + 1.0, b.x1) - std::max<double>(x, b.x0), 0.0, 1.0);
      cv_.blend(x, y, c, static_cast<float>(cov));
    }
  }
  draw_spines(b);
  if (range > 0) {
    const double length_pt = b.height() / dpi_ * 72.0;
    const int nbins = std::clamp(static_cast<int>(std::floor(length_pt / (kFontPt * 2))), 1, 9);
    const std::vector<double> pos = max_n_locator(m.vmin, m.vmax, nbins, {1, 2, 2.5, 5, 10}, false);
    const std::vector<std::string> text = format_ticks(pos);
    std::vector<tick> t;
    for (std::size_t k = 0; k < pos.size(); ++k) t.push_back({pos[k], text[k]});
    draw_ticks(t, false, true, true, b, m.vmin, m.vmax);
  }
}

void axes_painter::paint() {
  const double W = fig_w_, H = fig_h_;
  rect outer{kLeft * W, (1 - kTop) * H, kRight * W, (1 - kBottom) * H};
  box_ = outer;
  rect cbar{};
  if (ax_.colorbar_) {
    // matplotlib's make_axes: fraction 0.15, pad 0.05, aspect 20, parent anchored right.
    const double w = outer.width();
    box_.x1 = outer.x0 + (1 - 0.15 - 0.05) * w;
    cbar = {outer.x0 + 0.85 * w, outer.y0,
            outer.x0 + 0.85 * w + std::min(0.15 * w, outer.height() / 20), outer.y1};
  }
  limits();
  if (ax_.matrix_) {
    // aspect='equal': shrink the box to square cells, centred (right-aligned beside a colorbar).
    const auto& m = *ax_.matrix_;
    const double cell = std::min(box_.width() / static_cast<double>(m.cols),
                                 box_.height() / static_cast<double>(m.rows));
    const double w = cell * static_cast<double>(m.cols), h = cell * static_cast<double>(m.rows);
    const double x0 = ax_.colorbar_ ? box_.x1 - w : box_.x0 + (box_.width() - w) / 2;
    const double y0 = box_.y0 + (box_.height() - h) / 2;
    box_ = {x0, y0, x0 + w, y0 + h};
    cv_.set_clip(box_);
    draw_matrix(cv_, const_view(m.values.data(), m.rows, m.cols), box_, *m.cmap, m.vmin, m.vmax);
    cv_.reset_clip();
  }
  draw_series();
  draw_spines(box_);

  const bool is_matrix = ax_.matrix_.has_value();
  const std::vector<tick> xt = xlog_ ? log_ticks(ax_.xticks_, box_.width())
                                     : ticks(ax_.xticks_, x0_, x1_, true, is_matrix, box_.width());
  const std::vector<tick> yt = ticks(ax_.yticks_, yb_, yt_, false, is_matrix, box_.height());
  rect xlabels{}, xlabels_top{};
  if (is_matrix) {
    // matshow: x tick labels on top, marks on both sides.
    xlabels_top = draw_ticks(xt, true, true, true, box_, x0_, x1_);
    draw_ticks(xt, true, false, false, box_, x0_, x1_);
  } else {
    xlabels = draw_ticks(xt, true, false, true, box_, x0_, x1_, xlog_);
  }
  // y ticks: value lo maps to the bottom edge.
  const rect ylabels = draw_ticks(yt, false, false, true, box_, yb_, yt_);

  if (!ax_.xlabel_.empty()) {
    const double y =
        std::max(box_.y1 + (kTickLenPt + kTickPadPt) * pt_, xlabels.y1) + kLabelPadPt * pt_;
    cv_.text(f_, ax_.xlabel_, {(box_.x0 + box_.x1) / 2, y}, fs(), kBlack, h_align::center,
             v_align::top);
  }
  if (!ax_.ylabel_.empty()) {
    const double left =
        ylabels.width() > 0 ? ylabels.x0 : box_.x0 - (kTickLenPt + kTickPadPt) * pt_;
    vertical_text(cv_, f_, ax_.ylabel_, {left - kLabelPadPt * pt_, (box_.y0 + box_.y1) / 2}, fs(),
                  kBlack);
  }
  if (!ax_.title_.empty()) {
    // The title sits above the top tick labels where there are any (matshow).
    double y = box_.y0;
    if (xlabels_top.height() > 0) y = std::min(y, xlabels_top.y0);
    cv_.text(f_, ax_.title_, {(box_.x0 + box_.x1) / 2, y - kTitlePadPt * pt_}, kTitlePt * pt_,
             kBlack, h_align::center, v_align::baseline);
  }
  if (ax_.legend_) draw_legend();
  if (ax_.colorbar_) draw_colorbar(cbar);
}

void detail::paint_axes(const axes& ax, canvas& cv, const font& f, double dpi, int width_px,
                        int height_px) {
  axes_painter(ax, cv, f, dpi, width_px, height_px).paint();
}

}  // namespace attnpool::render
