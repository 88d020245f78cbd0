// Colormaps against matplotlib's definitions.
#include <attnpool/render.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>

namespace ar = attnpool::render;

namespace {

struct bone_case {
  double t;
  std::array<double, 3> rgb;  // the lookup-table entry
  std::array<int, 3> bytes;   // matplotlib's 8-bit colour: trunc(255 * entry)
};

}  // namespace

// Derived by hand from _bone_data (matplotlib/_cm.py):
//   red   (0, 0) (0.746032, 0.652778) (1, 1)
//   green (0, 0) (0.365079, 0.319444) (0.746032, 0.777778) (1, 1)
//   blue  (0, 0) (0.365079, 0.444444) (1, 1)
// matplotlib samples the segments at x = i / 255 (N = 256) and looks t up at
// i = min(floor(256 t), 255), then writes trunc(255 * value) into images. So:
//   t = .25: i =  64, x = 0.250980: r = x * .652778/.746032            = 0.219608 -> 56
//                                   g = x * .319444/.365079            = 0.219608 -> 55 (55.99998)
//                                   b = x * .444444/.365079            = 0.305541 -> 77
//   t = .5:  i = 128, x = 0.501961: r = x * .652778/.746032            = 0.439216 -> 112
//                                   g = .319444 + (x-.365079)*.458334/.380953 = 0.484130 -> 123
//                                   b = .444444 + (x-.365079)*.555556/.634921 = 0.564216 -> 143
//   t = .75: i = 192, x = 0.752941: r = .652778 + (x-.746032)*.347222/.253968 = 0.662224 -> 168
//                                   g = .777778 + (x-.746032)*.222222/.253968 = 0.783824 -> 199
//                                   b = .444444 + (x-.365079)*.555556/.634921 = 0.783823 -> 199
//   t = 0 -> black, t = 1 -> white.
// (matplotlib 3.11 prints the same entries and bytes for colormaps['bone'](t).)
TEST(render_colormap, BoneMatchesMatplotlibSegmentData) {
  const bone_case cases[] = {
      {0.0, {0, 0, 0}, {0, 0, 0}},
      {0.25, {0.219607843, 0.219607757, 0.305541347}, {56, 55, 77}},
      {0.5, {0.439215686, 0.484129869, 0.564215588}, {112, 123, 143}},
      {0.75, {0.662224143, 0.783823529, 0.783823481}, {168, 199, 199}},
      {1.0, {1, 1, 1}, {255, 255, 255}},
  };
  const ar::colormap& bone = ar::colormap::bone();
  for (const bone_case& c : cases) {
    const auto rgb = bone.rgb(c.t);
    const ar::color got = bone(c.t);
    std::printf("bone(%.2f) = (%.9f, %.9f, %.9f) -> (%d, %d, %d)\n", c.t, rgb[0], rgb[1], rgb[2],
                got.r, got.g, got.b);
    for (int ch = 0; ch < 3; ++ch)
      EXPECT_NEAR(rgb[ch], c.rgb[ch], 1e-8) << "t=" << c.t << " channel " << ch;
    EXPECT_EQ(got, (ar::color{static_cast<std::uint8_t>(c.bytes[0]),
                              static_cast<std::uint8_t>(c.bytes[1]),
                              static_cast<std::uint8_t>(c.bytes[2]), 255}))
        << "t=" << c.t;
  }
}

TEST(render_colormap, ViridisAndGrayEndpoints) {
  // First and last rows of _viridis_data, and matplotlib's bytes at 0, 0.5, 1.
  EXPECT_NEAR(ar::colormap::viridis().rgb(0.0)[0], 0.267004, 1e-9);
  EXPECT_NEAR(ar::colormap::viridis().rgb(1.0)[2], 0.143936, 1e-9);
  EXPECT_EQ(ar::colormap::viridis()(0.0), (ar::color{68, 1, 84, 255}));
  EXPECT_EQ(ar::colormap::viridis()(0.5), (ar::color{32, 144, 140, 255}));
  EXPECT_EQ(ar::colormap::viridis()(1.0), (ar::color{253, 231, 36, 255}));
  EXPECT_EQ(ar::colormap::gray()(0.5), (ar::color{128, 128, 128, 255}));
  EXPECT_EQ(ar::colormap::gray()(0.0), ar::kBlack);
  EXPECT_EQ(ar::colormap::gray()(1.0), ar::kWhite);
}

TEST(render_colormap, OutOfRangeClampsAndNanIsTransparent) {
  const ar::colormap& c = ar::colormap::bone();
  EXPECT_EQ(c(-3.0), c(0.0));
  EXPECT_EQ(c(7.0), c(1.0));
  EXPECT_EQ(c(std::nan("")), ar::kTransparent);
}

TEST(render_colormap, ByNameRejectsUnknownNames) {
  EXPECT_EQ(&ar::colormap::by_name("bone"), &ar::colormap::bone());
  try {
    (void)ar::colormap::by_name("jet");
    FAIL() << "no exception";
  } catch (const attnpool::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'jet'"), std::string::npos) << e.what();
  }
}
