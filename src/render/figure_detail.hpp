// What the figure's source files share: the tick locators and formatters (ticks.cpp) and the
// painting of one axes (axes_painter.cpp), which figure::render calls. Private to the renderer.
#pragma once

#include <attnpool/render.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace attnpool::render::detail {

inline bool finite(double v) noexcept {
  return std::isfinite(v);
}

// matplotlib.ticker.MaxNLocator._raw_ticks (with scale_range and _Edge_integer), restricted to
// the ticks inside [vmin, vmax].
std::vector<double> max_n_locator(double vmin, double vmax, int nbins, std::vector<double> steps,
                                  bool integer);

std::vector<double> multiple_locator(double vmin, double vmax, double step);

// matplotlib.ticker.ScalarFormatter._set_format without offset or scientific notation: the
// fewest decimals that show every tick to within 1e-3 of the ticks' range.
std::vector<std::string> format_ticks(const std::vector<double>& locs);

// matplotlib's LogFormatterSciNotation: "10⁻¹" at a decade, "2×10⁻¹" between decades (the
// coefficient rounded to what a tick at s x 10^k needs).
std::string log_label(double v);

// matplotlib.ticker.LogLocator(base 10).tick_values for the major ticks (subs = 1) and the minor
// ones (subs = 'auto': 2..9), restricted to [vmin, vmax]. numticks is the axis' tick space.
void log_locator(double vmin, double vmax, int numticks, std::vector<double>& major,
                 std::vector<double>& minor);

// Paints `ax` onto `cv`, a figure of width_px x height_px pixels at `dpi`.
void paint_axes(const axes& ax, canvas& cv, const font& f, double dpi, int width_px, int height_px);

}  // namespace attnpool::render::detail
