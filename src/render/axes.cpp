// The axes' public calls: they check their arguments and record what to draw; the drawing is
// axes_painter.cpp's.
#include "figure_detail.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace attnpool::render {
namespace {

using detail::finite;

std::vector<double> to_double(std::span<const float> v) {
  return {v.begin(), v.end()};
}

}  // namespace

void axes::plot(std::span<const double> x, std::span<const double> y, line_style style) {
  ATTNPOOL_EXPECTS(x.size() == y.size(), "plot: x and y must have the same size, got ", x.size(),
                   " and ", y.size());
  ATTNPOOL_EXPECTS(style.line_width_pt >= 0 && style.marker_size_pt >= 0,
                   "plot: line width and marker size must be >= 0, got ", style.line_width_pt,
                   " and ", style.marker_size_pt);
  if (xscale_ == axis_scale::log) check_log_x("plot", x);
  if (!style.color) style.color = kTab10[cycle_++ % kTab10.size()];
  series_.push_back({{x.begin(), x.end()}, {y.begin(), y.end()}, std::move(style)});
}

void axes::plot(std::span<const double> x, std::span<const double> y, std::string_view fmt,
                std::string label) {
  line_style s = parse_format(fmt);
  s.label = std::move(label);
  plot(x, y, std::move(s));
}

void axes::plot(std::span<const float> x, std::span<const float> y, std::string_view fmt,
                std::string label) {
  const std::vector<double> xd = to_double(x), yd = to_double(y);
  plot(xd, yd, fmt, std::move(label));
}

void axes::scatter(std::span<const double> x, std::span<const double> y, double size_pt,
                   std::optional<color> c, std::string label) {
  line_style s;
  s.color = c;
  s.draw_line = false;
  s.marker = marker::circle;
  s.marker_size_pt = size_pt;
  s.label = std::move(label);
  plot(x, y, std::move(s));
}

void axes::scatter(std::span<const float> x, std::span<const float> y, double size_pt,
                   std::optional<color> c, std::string label) {
  const std::vector<double> xd = to_double(x), yd = to_double(y);
  scatter(xd, yd, size_pt, c, std::move(label));
}

void axes::matshow(const_view m, const matshow_options& opts) {
  ATTNPOOL_EXPECTS(xscale_ == axis_scale::linear, "matshow: needs a linear x axis, got a log one");
  ATTNPOOL_EXPECTS(m.data != nullptr && m.rows > 0 && m.cols > 0 && m.ld >= m.cols,
                   "matshow: matrix must be non-empty with ld >= cols, got ", m.rows, " x ", m.cols,
                   " ld ", m.ld);
  matrix mat;
  mat.rows = m.rows;
  mat.cols = m.cols;
  mat.values.resize(m.rows * m.cols);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (std::size_t i = 0; i < m.rows; ++i) {
    for (std::size_t j = 0; j < m.cols; ++j) {
      const float v = m(i, j);
      mat.values[i * m.cols + j] = v;
      if (std::isfinite(v)) {
        lo = std::min(lo, static_cast<double>(v));
        hi = std::max(hi, static_cast<double>(v));
      }
    }
  }
  if (!(lo <= hi)) lo = hi = 0;  // no finite value at all
  mat.vmin = opts.vmin.value_or(lo);
  mat.vmax = opts.vmax.value_or(hi);
  ATTNPOOL_EXPECTS(finite(mat.vmin) && finite(mat.vmax) && mat.vmin <= mat.vmax,
                   "matshow: need finite vmin <= vmax, got ", mat.vmin, ", ", mat.vmax);
  mat.cmap = opts.cmap != nullptr ? opts.cmap : &colormap::viridis();
  const auto label_ticks = [](const std::vector<std::string>& labels) {
    tick_spec t;
    for (std::size_t k = 0; k < labels.size(); ++k) t.positions.push_back(static_cast<double>(k));
    t.labels = labels;
    return t;
  };
  if (!opts.column_labels.empty()) xticks_ = label_ticks(opts.column_labels);
  if (!opts.row_labels.empty()) yticks_ = label_ticks(opts.row_labels);
  matrix_ = std::move(mat);
}

void axes::colorbar() {
  ATTNPOOL_EXPECTS(matrix_.has_value(), "colorbar: call matshow first");
  colorbar_ = true;
}

void axes::set_xlim(double lo, double hi) {
  ATTNPOOL_EXPECTS(finite(lo) && finite(hi) && lo != hi,
                   "set_xlim: need finite, distinct limits, got ", lo, ", ", hi);
  ATTNPOOL_EXPECTS(xscale_ == axis_scale::linear || (lo > 0 && hi > 0),
                   "set_xlim: limits of a log x axis must be > 0, got ", lo, ", ", hi);
  xlim_ = std::array<double, 2>{lo, hi};
}

void axes::set_xscale(axis_scale scale) {
  if (scale == axis_scale::log) {
    ATTNPOOL_EXPECTS(!matrix_.has_value(), "set_xscale: a matshow axes cannot have a log x axis");
    ATTNPOOL_EXPECTS(xticks_.step <= 0,
                     "set_xscale: a fixed tick step does not apply to a log x axis, got step ",
                     xticks_.step);
    for (const auto& s : series_) check_log_x("set_xscale", s.x);
    for (const double p : xticks_.positions) {
      ATTNPOOL_EXPECTS(p > 0, "set_xscale: x tick positions on a log axis must be > 0, got ", p);
    }
    if (xlim_) {
      ATTNPOOL_EXPECTS((*xlim_)[0] > 0 && (*xlim_)[1] > 0,
                       "set_xscale: x limits of a log axis must be > 0, got ", (*xlim_)[0], ", ",
                       (*xlim_)[1]);
    }
  }
  xscale_ = scale;
}

void axes::set_xticks(tick_spec ticks) {
  if (xscale_ == axis_scale::log) {
    ATTNPOOL_EXPECTS(ticks.step <= 0,
                     "set_xticks: a fixed tick step does not apply to a log x axis, got step ",
                     ticks.step);
    for (const double p : ticks.positions) {
      ATTNPOOL_EXPECTS(p > 0, "set_xticks: x tick positions on a log axis must be > 0, got ", p);
    }
  }
  xticks_ = std::move(ticks);
}

void axes::check_log_x(const char* what, std::span<const double> x) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    // NaN passes (it breaks the line, as on a linear axis); -inf, 0 and negatives do not.
    ATTNPOOL_EXPECTS(!(x[i] <= 0), what, ": x values on a log x axis must be > 0, got x[", i,
                     "] = ", x[i]);
  }
}

void axes::set_ylim(double lo, double hi) {
  ATTNPOOL_EXPECTS(finite(lo) && finite(hi) && lo != hi,
                   "set_ylim: need finite, distinct limits, got ", lo, ", ", hi);
  ylim_ = std::array<double, 2>{lo, hi};
}

}  // namespace attnpool::render
