// The log x axis (axes::set_xscale): major tick marks land at the decades, minor ones at
// 2..9 x 10^k, limits and margins are taken in log space, and data <= 0 is rejected by value.
#include <attnpool/render.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace ar = attnpool::render;

namespace {

// matplotlib's default figure: 640 x 480 px, the axes box from x = 80 to 576 and its bottom
// spine on the pixel row 427 (0.89 * 480, snapped to a pixel centre).
constexpr double kBoxX0 = 0.125 * 640, kBoxX1 = 0.9 * 640;
constexpr int kSpineRow = 427;

// Centres of the runs of dark pixels along row y between the left and right spines (tick marks
// are one pixel wide plus anti-aliased fringes; left of the box are the y tick labels), in pixels.
std::vector<double> dark_runs(const ar::image& img, int y) {
  std::vector<double> centres;
  int start = -1;
  const int x0 = static_cast<int>(kBoxX0) - 1, x1 = static_cast<int>(kBoxX1) + 2;
  for (int x = x0; x <= x1; ++x) {
    const bool dark = x < x1 && img.at(x, y).r < 128;
    if (dark && start < 0) start = x;
    if (!dark && start >= 0) {
      centres.push_back((start + x) / 2.0);
      start = -1;
    }
  }
  return centres;
}

double expected_px(double v, double lo, double hi) {
  return kBoxX0 +
         (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) * (kBoxX1 - kBoxX0);
}

}  // namespace

TEST(render_log_axis, MajorTicksAtDecadesMinorTicksBetween) {
  const double lo = 0.05, hi = 2000;
  ar::figure fig;
  ar::axes& ax = fig.add_subplot();
  ax.set_xscale(ar::axis_scale::log);
  ax.set_xlim(lo, hi);
  ax.set_ylim(0, 1);
  const ar::image img = fig.render();
  const double pt = 100 / 72.0;
  // 3 pt below the spine only the 3.5 pt major marks reach; 1 pt below, the 2 pt minor ones too.
  const std::vector<double> major = dark_runs(img, kSpineRow + static_cast<int>(3 * pt));
  const std::vector<double> all = dark_runs(img, kSpineRow + static_cast<int>(1 * pt));
  const std::vector<double> decades = {0.1, 1, 10, 100, 1000};
  ASSERT_EQ(major.size(), decades.size());
  for (std::size_t k = 0; k < decades.size(); ++k) {
    EXPECT_NEAR(major[k], expected_px(decades[k], lo, hi), 1.0) << "decade " << decades[k];
  }
  std::vector<double> expected_all;
  for (int e = -2; e <= 3; ++e) {
    for (int s = 1; s <= 9; ++s) {
      const double v = s * std::pow(10.0, e);
      if (v >= lo && v <= hi) expected_all.push_back(expected_px(v, lo, hi));
    }
  }
  ASSERT_EQ(all.size(), expected_all.size());
  for (std::size_t k = 0; k < all.size(); ++k) EXPECT_NEAR(all[k], expected_all[k], 1.0) << k;
}

TEST(render_log_axis, ManyDecadesThinTheMajorsAndDropTheMinors) {
  // 24 decades on a 496 px axis (tick space 9): LogLocator's stride is 24 / 9 + 1 = 3 decades.
  const double lo = 1e-12, hi = 1e12;
  ar::figure fig;
  ar::axes& ax = fig.add_subplot();
  ax.set_xscale(ar::axis_scale::log);
  ax.set_xlim(lo, hi);
  const ar::image img = fig.render();
  const std::vector<double> all = dark_runs(img, kSpineRow + 2);
  ASSERT_EQ(all.size(), 9U);  // 1e-12, 1e-9, ..., 1e12
  for (std::size_t k = 0; k < all.size(); ++k) {
    EXPECT_NEAR(all[k], expected_px(std::pow(10.0, -12.0 + 3.0 * static_cast<double>(k)), lo, hi),
                1.0);
  }
}

TEST(render_log_axis, AutoLimitsAddTheMarginInLogSpace) {
  // Data from 1 to 100: 2 decades plus 5 % of them on each side, so 1 and 100 sit at
  // 1/22 and 21/22 of the axis.
  ar::figure fig;
  ar::axes& ax = fig.add_subplot();
  const std::vector<double> x = {1, 10, 100}, y = {0, 1, 0};
  ax.plot(x, y);
  ax.set_xscale(ar::axis_scale::log);
  ax.set_ylim(-10, 10);  // keep the line away from the tick rows
  const ar::image img = fig.render();
  const std::vector<double> major = dark_runs(img, kSpineRow + 4);
  ASSERT_EQ(major.size(), 3U);
  const double w = kBoxX1 - kBoxX0;
  EXPECT_NEAR(major[0], kBoxX0 + w / 22, 1.0);
  EXPECT_NEAR(major[1], kBoxX0 + w / 2, 1.0);
  EXPECT_NEAR(major[2], kBoxX0 + 21 * w / 22, 1.0);
}

TEST(render_log_axis, RejectsDataAtOrBelowZeroNamingTheValue) {
  const auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const attnpool::invalid_argument& e) {
      return e.what();
    }
    return "(no exception)";
  };
  ar::figure fig;
  ar::axes& ax = fig.add_subplot();
  const std::vector<double> bad_x = {1, 2, -0.5}, y = {1, 2, 3};
  ax.plot(bad_x, y);  // fine while the axis is linear
  EXPECT_NE(message_of([&] { ax.set_xscale(ar::axis_scale::log); }).find("x[2] = -0.5"),
            std::string::npos);
  EXPECT_EQ(ax.xscale(), ar::axis_scale::linear);  // unchanged after the throw

  ar::figure fig2;
  ar::axes& ax2 = fig2.add_subplot();
  ax2.set_xscale(ar::axis_scale::log);
  const std::vector<double> zero_x = {0, 1, 2};
  EXPECT_NE(message_of([&] { ax2.plot(zero_x, y); }).find("x[0] = 0"), std::string::npos);
  EXPECT_NE(message_of([&] { ax2.set_xlim(-1, 10); }).find("-1"), std::string::npos);
  ar::tick_spec step;
  step.step = 1;
  EXPECT_NE(message_of([&] { ax2.set_xticks(step); }).find("step"), std::string::npos);
  // NaN is no value at all: it breaks the line, as on a linear axis.
  const std::vector<double> nan_x = {1, std::nan(""), 3};
  EXPECT_NO_THROW(ax2.plot(nan_x, y));
  EXPECT_NO_THROW((void)fig2.render());
}
