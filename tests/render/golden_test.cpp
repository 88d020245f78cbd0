// Golden images: fixed scenes rendered and compared per pixel with the PNGs in golden/.
//
// A failing comparison writes NAME_actual.png and NAME_diff.png next to the test binary. After
// checking them by eye, re-record with:
//   ATTNPOOL_RECORD_GOLDEN=1 ctest --test-dir <build> -R render_golden
#include <attnpool/render.hpp>

#include <png_decode.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <vector>

namespace ar = attnpool::render;

namespace {

const std::filesystem::path kGoldenDir = ATTNPOOL_GOLDEN_DIR;
const std::filesystem::path kOutDir = ATTNPOOL_GOLDEN_OUT_DIR;

// Rasterisation is deterministic; the slack only absorbs a different compiler's floating-point
// contraction or a slightly different stb/font build: every channel within 8 levels, and at
// most 0.5 % of the pixels beyond 2 levels.
constexpr int kMaxChannelDiff = 8;
constexpr double kMaxDifferingFraction = 0.005;

void check_golden(const std::string& name, const ar::image& actual) {
  const std::filesystem::path golden = kGoldenDir / (name + ".png");
  const char* record = std::getenv("ATTNPOOL_RECORD_GOLDEN");
  if (record != nullptr && std::string(record) == "1") {
    ar::save_png(actual, golden);
    GTEST_SKIP() << "recorded " << golden << "; look at it before committing it";
  }
  const std::string how =
      "re-record (after looking at the images) with ATTNPOOL_RECORD_GOLDEN=1 "
      "ctest -R render_golden";
  const auto expected = render_test::load_png(golden);
  ASSERT_TRUE(expected.has_value()) << "cannot read " << golden << "; " << how;
  const std::filesystem::path actual_path = kOutDir / (name + "_actual.png");
  const std::filesystem::path diff_path = kOutDir / (name + "_diff.png");
  if (expected->width() != actual.width() || expected->height() != actual.height()) {
    ar::save_png(actual, actual_path);
    FAIL() << name << ": size " << actual.width() << "x" << actual.height()
           << " differs from golden " << expected->width() << "x" << expected->height()
           << "; wrote " << actual_path << "; " << how;
  }
  ar::image diff(actual.width(), actual.height(), ar::kWhite);
  int worst = 0;
  long differing = 0;
  for (int y = 0; y < actual.height(); ++y) {
    for (int x = 0; x < actual.width(); ++x) {
      const ar::color a = actual.at(x, y), e = expected->at(x, y);
      const int d = std::max(
          {std::abs(a.r - e.r), std::abs(a.g - e.g), std::abs(a.b - e.b), std::abs(a.a - e.a)});
      worst = std::max(worst, d);
      if (d > 2) ++differing;
      // Differences in red, scaled up so that small ones show.
      const auto v = static_cast<std::uint8_t>(255 - std::min(255, d * 8));
      diff.view().pixels[(static_cast<std::size_t>(y) * static_cast<std::size_t>(actual.width()) +
                          static_cast<std::size_t>(x)) *
                             4 +
                         1] = v;
      diff.view().pixels[(static_cast<std::size_t>(y) * static_cast<std::size_t>(actual.width()) +
                          static_cast<std::size_t>(x)) *
                             4 +
                         2] = v;
    }
  }
  const double fraction = static_cast<double>(differing) / (actual.width() * actual.height());
  if (worst > kMaxChannelDiff || fraction > kMaxDifferingFraction) {
    ar::save_png(actual, actual_path);
    ar::save_png(diff, diff_path);
    FAIL() << name << ": worst channel difference " << worst << " (limit " << kMaxChannelDiff
           << "), " << 100 * fraction << " % of pixels differ by more than 2 (limit "
           << 100 * kMaxDifferingFraction << " %); wrote " << actual_path << " and " << diff_path
           << "; " << how;
  }
}

}  // namespace

// Lines of several widths and angles, a clipped polyline, filled / stroked / translucent
// rectangles and discs.
TEST(render_golden, Primitives) {
  ar::image img(160, 120, ar::kWhite);
  ar::canvas cv(img.view());
  for (int k = 0; k < 6; ++k) {
    const double a = 0.25 * k;
    cv.line({12, 12}, {12 + 60 * std::cos(a), 12 + 60 * std::sin(a)}, 0.5 + k,
            ar::kTab10[static_cast<std::size_t>(k)]);
  }
  cv.fill_rect({90, 10, 130, 40}, ar::kTab10[2]);
  cv.stroke_rect({100.5, 20.5, 150.5, 55.5}, 2.0, ar::kBlack);
  cv.fill_rect({110, 30, 150, 70}, {214, 39, 40, 128});
  cv.fill_circle({30, 95}, 4.86, ar::kTab10[1]);
  cv.fill_circle({45.3, 95.7}, 10, {31, 119, 180, 160});
  cv.fill_circle({60, 90}, 0.4, ar::kBlack);
  cv.set_clip({70, 60, 150, 110});
  cv.stroke_rect({70, 60, 150, 110}, 1, {127, 127, 127, 255});
  std::vector<ar::point> wave;
  for (int i = 0; i <= 60; ++i) wave.push_back({60 + 1.6 * i, 85 + 20 * std::sin(i * 0.2)});
  cv.polyline(wave, 2.08, {31, 119, 180, 200});
  check_golden("primitives", img);
}

// Text alignments around a cross-hair, 10 pt at 100 dpi and a larger size.
TEST(render_golden, Text) {
  ar::image img(160, 120, ar::kWhite);
  ar::canvas cv(img.view());
  const auto f = ar::font::default_font();
  const double fs = 10 * 100 / 72.0;
  cv.fill_rect({80, 0, 81, 120}, {200, 200, 255, 255});
  cv.fill_rect({0, 30, 160, 31}, {200, 200, 255, 255});
  cv.text(*f, "left", {80, 30}, fs, ar::kBlack, ar::h_align::left, ar::v_align::bottom);
  cv.text(*f, "right", {80, 30}, fs, ar::kBlack, ar::h_align::right, ar::v_align::top);
  cv.text(*f, "centre", {80, 60}, fs, ar::kBlack, ar::h_align::center,
          ar::v_align::center_baseline);
  cv.text(*f,
          "learning \xe2\x88\x92"
          "2.5",
          {80, 90}, 18, ar::kTab10[0], ar::h_align::center, ar::v_align::baseline);
  cv.text(*f, "", {10, 10}, fs, ar::kBlack);
  check_golden("text", img);
}

// A small matplotlib-style plot: line, markers, ticks, labels, title, legend.
TEST(render_golden, PlotFigure) {
  ar::figure fig(3.2, 2.4, 50);  // 160 x 120
  ar::axes& ax = fig.add_subplot();
  std::vector<double> x, y, yn;
  for (int i = 0; i < 30; ++i) {
    x.push_back(i / 3.0);
    y.push_back(std::sin(i / 3.0) + i / 10.0);
    yn.push_back(y.back() + 0.4 * std::cos(i * 2.1));
  }
  ax.plot(x, y, "-", "truth");
  ax.plot(x, yn, "o", "data");
  ax.set_title("fit");
  ax.legend(ar::legend_loc::upper_left);
  check_golden("plot_figure", fig.render());
}

// matshow with labels on both axes and a colorbar.
TEST(render_golden, MatshowFigure) {
  ar::figure fig(3.2, 2.4, 50);
  ar::axes& ax = fig.add_subplot();
  std::vector<float> m(4 * 5);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>((i * 7) % 11);
  ar::matshow_options opts;
  opts.cmap = &ar::colormap::bone();
  opts.row_labels = {"a", "b", "c", "d"};
  opts.column_labels = {"v", "w", "x", "y", "z"};
  ax.matshow(attnpool::const_view(m.data(), 4, 5), opts);
  ax.colorbar();
  check_golden("matshow_figure", fig.render());
}

// A log x axis (matplotlib's set_xscale('log')): decade ticks labelled 10⁻¹ .. 10¹, unlabelled
// minor ticks at 2..9 x 10^k, a curve and markers over three decades and a legend. (Axis labels
// would fall off a figure this small with matplotlib's default margins.)
TEST(render_golden, LogXFigure) {
  ar::figure fig(3.2, 2.4, 100);  // 320 x 240
  ar::axes& ax = fig.add_subplot();
  std::vector<double> h, cv, hm, cvm;
  for (int i = 0; i < 40; ++i) {
    h.push_back(0.05 * std::pow(400.0, i / 39.0));  // 0.05 .. 20, log-spaced
    cv.push_back(std::pow(std::log(h.back() / 0.8), 2) + 1);
  }
  hm.push_back(0.8);
  cvm.push_back(1);
  ax.set_xscale(ar::axis_scale::log);
  ax.plot(h, cv, "-", "CV error");
  ax.plot(hm, cvm, "o", "h = 0.8");
  ax.legend(ar::legend_loc::upper_right);
  check_golden("log_x_figure", fig.render());
}
