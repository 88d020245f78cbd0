// Properties of the canvas that do not depend on exact pixels.
#include <attnpool/render.hpp>

#include <png_decode.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>

namespace ar = attnpool::render;

namespace {

// Every pixel outside [x0, x1) x [y0, y1) still has alpha 0.
void expect_untouched_outside(const ar::image& img, int x0, int y0, int x1, int y1) {
  for (int y = 0; y < img.height(); ++y) {
    for (int x = 0; x < img.width(); ++x) {
      if (x >= x0 && x < x1 && y >= y0 && y < y1) continue;
      ASSERT_EQ(img.at(x, y).a, 0) << "pixel (" << x << ", " << y << ") outside the clip was drawn";
    }
  }
}

}  // namespace

TEST(render_canvas, LinesStayInsideTheirClipRectangle) {
  const unsigned seed = 20240601;
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> pos(-40.0, 140.0), width(0.3, 12.0);
  ar::image img(100, 80, ar::kTransparent);
  ar::canvas cv(img.view());
  const ar::rect clip{10.5, 12.0, 60.25, 47.7};
  cv.set_clip(clip);
  for (int i = 0; i < 200; ++i) {
    cv.line({pos(rng), pos(rng)}, {pos(rng), pos(rng)}, width(rng),
            ar::kTab10[static_cast<std::size_t>(i) % 10]);
  }
  const ar::point zigzag[] = {{-20, -20}, {120, 30}, {-5, 70}, {90, 90}};
  cv.polyline(zigzag, 5.0, ar::kBlack);
  // Pixels that the fractional clip edges cut are allowed (with partial coverage).
  expect_untouched_outside(img, 10, 12, 61, 48);
  // The clip is actually reached: the lines cover its interior somewhere.
  EXPECT_NE(img.at(30, 30).a, 0);
}

TEST(render_canvas, EveryPrimitiveGoesThroughTheClip) {
  ar::image img(64, 64, ar::kTransparent);
  ar::canvas cv(img.view());
  cv.set_clip({20, 20, 40, 40});
  cv.fill_rect({-10, -10, 100, 100}, ar::kBlack);
  cv.stroke_rect({5, 5, 59, 59}, 30, ar::kBlack);
  cv.fill_circle({32, 32}, 50, ar::kBlack);
  cv.text(*ar::font::default_font(), "WWWWWWWWWW", {0, 40}, 40, ar::kBlack);
  const float m[4] = {1, 2, 3, 4};
  ar::draw_matrix(cv, attnpool::const_view(m, 2, 2), {0, 0, 64, 64}, ar::colormap::viridis(), 1, 4);
  expect_untouched_outside(img, 20, 20, 40, 40);
  const ar::canvas::pixel_span s = cv.clip_bounds({-1e9, -1e9, 1e9, 1e9});
  EXPECT_EQ(s.x0, 20);
  EXPECT_EQ(s.x1, 40);
  EXPECT_TRUE(cv.clip_bounds({0, 0, 10, 10}).empty());
  EXPECT_TRUE(cv.clip_bounds({std::nan(""), 0, 10, 10}).empty());
}

TEST(render_canvas, EmptyTextDrawsNothing) {
  ar::image img(80, 40, ar::kWhite);
  ar::canvas cv(img.view());
  const auto font = ar::font::default_font();
  const ar::rect r =
      cv.text(*font, "", {40, 20}, 14, ar::kBlack, ar::h_align::center, ar::v_align::center);
  const ar::rect spaces = cv.text(*font, "   ", {40, 20}, 14, ar::kBlack);
  EXPECT_EQ(r.width(), 0);
  EXPECT_EQ(spaces.width(), 0);
  for (int y = 0; y < img.height(); ++y) {
    for (int x = 0; x < img.width(); ++x) ASSERT_EQ(img.at(x, y), ar::kWhite) << x << ", " << y;
  }
  EXPECT_EQ(ar::measure_text(*font, "", 14).width(), 0);
  // And a non-empty text does draw.
  cv.text(*font, "Ag", {40, 20}, 14, ar::kBlack, ar::h_align::center, ar::v_align::center);
  bool drawn = false;
  for (int y = 0; y < img.height(); ++y) {
    for (int x = 0; x < img.width(); ++x) drawn = drawn || img.at(x, y) != ar::kWhite;
  }
  EXPECT_TRUE(drawn);
}

TEST(render_canvas, AlphaBlendsSourceOver) {
  ar::image img(4, 4, ar::kWhite);
  ar::canvas cv(img.view());
  cv.fill_rect({0, 0, 4, 4}, {255, 0, 0, 128});
  const ar::color c = img.at(1, 1);
  EXPECT_EQ(c.r, 255);
  EXPECT_NEAR(c.g, 127, 1);  // 255 * (1 - 128/255)
  EXPECT_EQ(c.a, 255);
  // Half a pixel of coverage halves the opacity.
  ar::image half(4, 1, ar::kWhite);
  ar::canvas hc(half.view());
  hc.fill_rect({0, 0, 1.5, 1}, ar::kBlack);
  EXPECT_EQ(half.at(0, 0), ar::kBlack);
  EXPECT_NEAR(half.at(1, 0).r, 128, 1);
  EXPECT_EQ(half.at(2, 0), ar::kWhite);
}

TEST(render_canvas, HeatmapCellColourIsTheColormapAtItsValue) {
  const std::size_t rows = 5, cols = 7;
  std::vector<float> m(rows * cols);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = std::sin(static_cast<float>(i)) * 3.0f + 1.0f;
  const double lo = *std::min_element(m.begin(), m.end()),
               hi = *std::max_element(m.begin(), m.end());
  ar::image img(200, 150, ar::kWhite);
  ar::canvas cv(img.view());
  const ar::rect dest{13.3, 7.9, 13.3 + 7 * 23.1, 7.9 + 5 * 25.7};
  for (const ar::colormap* cmap :
       {&ar::colormap::bone(), &ar::colormap::viridis(), &ar::colormap::gray()}) {
    ar::draw_matrix(cv, attnpool::const_view(m.data(), rows, cols), dest, *cmap, lo, hi);
    for (std::size_t i = 0; i < rows; ++i) {
      for (std::size_t j = 0; j < cols; ++j) {
        const int x = static_cast<int>(dest.x0 + (static_cast<double>(j) + 0.5) * 23.1);
        const int y = static_cast<int>(dest.y0 + (static_cast<double>(i) + 0.5) * 25.7);
        EXPECT_EQ(img.at(x, y), (*cmap)((m[i * cols + j] - lo) / (hi - lo)))
            << cmap->name() << " cell (" << i << ", " << j << ")";
      }
    }
  }
}

TEST(render_canvas, LargeHeatmapRasterisesPerPixel) {
  // 4096 x 4096 cells into 770 x 770 pixels: one lookup per pixel, not 16M rectangles.
  const std::size_t n = 4096;
  std::vector<float> m(n * n);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) m[i * n + j] = static_cast<float>(i + j);
  }
  ar::image img(800, 800, ar::kWhite);
  ar::canvas cv(img.view());
  const auto start = std::chrono::steady_clock::now();
  ar::draw_matrix(cv, attnpool::const_view(m.data(), n, n), {15, 15, 785, 785},
                  ar::colormap::viridis(), 0, 2.0 * (n - 1));
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("4096 x 4096 into 770 x 770 px: %.1f ms\n", ms);
  EXPECT_LT(ms, 2000.0);
  EXPECT_EQ(img.at(15, 15), ar::colormap::viridis()(0.0));
  EXPECT_EQ(img.at(784, 784), ar::colormap::viridis()(1.0));
  EXPECT_EQ(img.at(14, 14), ar::kWhite);
}

TEST(render_canvas, SavePngToUnwritableDirectoryThrowsNamingThePath) {
  ar::image img(8, 8);
  const std::filesystem::path missing = "/nonexistent-attnpool-dir/figure.png";
  try {
    ar::save_png(img, missing);
    FAIL() << "no exception";
  } catch (const attnpool::error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  // A "directory" that is a regular file: unwritable even for root.
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() / "attnpool-render-not-a-dir";
  std::ofstream(file) << "x";
  const std::filesystem::path inside = file / "figure.png";
  EXPECT_THROW(ar::save_png(img, inside), attnpool::error);
  std::filesystem::remove(file);
}

TEST(render_canvas, SavePngRoundTrips) {
  ar::image img(5, 3, ar::kWhite);
  ar::canvas cv(img.view());
  cv.fill_rect({1, 1, 3, 2}, {10, 20, 30, 255});
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / "attnpool-render-roundtrip.png";
  ar::save_png(img, path);
  const auto back = render_test::load_png(path);
  ASSERT_TRUE(back.has_value());
  ASSERT_EQ(back->width(), 5);
  ASSERT_EQ(back->height(), 3);
  EXPECT_EQ(back->at(2, 1), (ar::color{10, 20, 30, 255}));
  EXPECT_EQ(back->at(0, 0), ar::kWhite);
  std::filesystem::remove(path);
}

TEST(render_canvas, MissingFontIsAClearError) {
  try {
    (void)ar::font::load("/nonexistent/NoSuchFont.ttf");
    FAIL() << "no exception";
  } catch (const attnpool::error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/NoSuchFont.ttf"), std::string::npos)
        << e.what();
  }
}

TEST(render_canvas, ParsesColoursAndFormats) {
  EXPECT_EQ(ar::parse_color("#1f77b4"), ar::kTab10[0]);
  EXPECT_EQ(ar::parse_color("C1"), ar::kTab10[1]);
  EXPECT_EQ(ar::parse_color("#00000080").a, 0x80);
  EXPECT_EQ(ar::parse_color("0.8"), (ar::color{204, 204, 204, 255}));
  EXPECT_THROW((void)ar::parse_color("#12345"), attnpool::invalid_argument);
  EXPECT_THROW((void)ar::parse_color("blue-ish"), attnpool::invalid_argument);
  EXPECT_EQ(ar::parse_format("o").draw_line, false);
  EXPECT_EQ(ar::parse_format("o").marker, ar::marker::circle);
  EXPECT_EQ(ar::parse_format("r-").color, ar::parse_color("r"));
  EXPECT_THROW((void)ar::parse_format("--"), attnpool::invalid_argument);
  ar::figure fig;
  std::vector<double> x{1, 2}, y{1};
  EXPECT_THROW(fig.add_subplot().plot(x, y), attnpool::invalid_argument);
  EXPECT_THROW(fig.add_subplot().colorbar(), attnpool::invalid_argument);
  EXPECT_THROW(ar::figure(0, 1), attnpool::invalid_argument);
}
