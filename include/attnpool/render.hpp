/// \file
/// attnpool's PNG renderer: an RGBA8 canvas with anti-aliased primitives and text, colormaps,
/// and a small matplotlib-like figure API (plot, scatter, matshow, colorbar, legend, a log x axis,
/// save_png).
///
/// Link attnpool::render. Everything here is host-only, synchronous and single-threaded per
/// object; distinct objects may be used from distinct threads.
///
/// Coordinates are pixels with the origin at the top-left corner of the canvas and y pointing
/// down. Pixel (i, j) covers [i, i+1) x [j, j+1); its centre is (i + 0.5, j + 0.5).
///
/// Fonts: text is drawn with stb_truetype from a TrueType file, by default DejaVu Sans (the
/// font matplotlib uses). font::default_font() looks, in order, at the ATTNPOOL_FONT environment
/// variable, at the font embedded at build time (CMake option ATTNPOOL_EMBED_FONT), and at the
/// path fixed at build time (CMake cache variable ATTNPOOL_FONT_PATH, default
/// /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf from Debian's fonts-dejavu-core). There is no
/// bitmap fallback: a missing or unreadable font throws attnpool::error naming every place
/// looked at, because a figure silently drawn in another font would no longer match matplotlib.
#pragma once

#include <attnpool/error.hpp>
#include <attnpool/types.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace attnpool::render {

// ---- colours ------------------------------------------------------------------------------------

/// An 8-bit RGBA colour, not premultiplied. a = 255 is opaque.
struct color {
  std::uint8_t r = 0;
  std::uint8_t g = 0;
  std::uint8_t b = 0;
  std::uint8_t a = 255;

  friend constexpr bool operator==(const color&, const color&) = default;
};

/// Parses "#rrggbb", "#rrggbbaa", a matplotlib single-letter colour ("b", "g", "r", "c", "m",
/// "y", "k", "w"), a cycle reference "C0".."C9" (tab10) or a grey level "0.8".
/// \throws invalid_argument naming the text when it is none of these.
color parse_color(std::string_view text);

/// matplotlib's default property cycle (tab10): #1f77b4, #ff7f0e, #2ca02c, #d62728, ...
inline constexpr std::array<color, 10> kTab10 = {{
    {0x1f, 0x77, 0xb4, 255},
    {0xff, 0x7f, 0x0e, 255},
    {0x2c, 0xa0, 0x2c, 255},
    {0xd6, 0x27, 0x28, 255},
    {0x94, 0x67, 0xbd, 255},
    {0x8c, 0x56, 0x4b, 255},
    {0xe3, 0x77, 0xc2, 255},
    {0x7f, 0x7f, 0x7f, 255},
    {0xbc, 0xbd, 0x22, 255},
    {0x17, 0xbe, 0xcf, 255},
}};

inline constexpr color kBlack{0, 0, 0, 255};
inline constexpr color kWhite{255, 255, 255, 255};
inline constexpr color kTransparent{0, 0, 0, 0};

// ---- pixels -------------------------------------------------------------------------------------

/// A non-owning view of RGBA8 pixels: pixel (x, y) starts at pixels + y * stride + 4 * x.
/// stride is in bytes and at least 4 * width.
struct canvas_view {
  std::uint8_t* pixels = nullptr;
  int width = 0;
  int height = 0;
  std::ptrdiff_t stride = 0;

  /// The colour at (x, y); no bounds check.
  [[nodiscard]] color at(int x, int y) const noexcept {
    const std::uint8_t* p = pixels + y * stride + 4 * static_cast<std::ptrdiff_t>(x);
    return {p[0], p[1], p[2], p[3]};
  }
};

/// An owning, densely packed RGBA8 image.
class image {
 public:
  image() = default;
  /// \throws invalid_argument when a dimension is negative or the size overflows.
  image(int width, int height, color fill = kWhite);

  [[nodiscard]] int width() const noexcept { return width_; }
  [[nodiscard]] int height() const noexcept { return height_; }
  [[nodiscard]] canvas_view view() noexcept {
    return {pixels_.data(), width_, height_, static_cast<std::ptrdiff_t>(width_) * 4};
  }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return pixels_.data(); }
  /// The colour at (x, y); no bounds check.
  [[nodiscard]] color at(int x, int y) const noexcept {
    const std::uint8_t* p = pixels_.data() + (static_cast<std::size_t>(y) * width_ + x) * 4;
    return {p[0], p[1], p[2], p[3]};
  }

 private:
  int width_ = 0;
  int height_ = 0;
  std::vector<std::uint8_t> pixels_;
};

/// Writes `view` as an 8-bit RGBA PNG (stb_image_write).
/// \throws invalid_argument on an empty or malformed view.
/// \throws error naming `path` when the file cannot be written.
void save_png(const canvas_view& view, const std::filesystem::path& path);
/// \overload
void save_png(const image& img, const std::filesystem::path& path);

// ---- fonts --------------------------------------------------------------------------------------

/// A TrueType font held in memory. Immutable once loaded; share it freely between threads.
class font {
 public:
  /// Loads a .ttf file. \throws error naming the path when it is missing or not a font.
  static std::shared_ptr<const font> load(const std::filesystem::path& path);
  /// Wraps font bytes already in memory (copied). \throws error when they are not a font.
  static std::shared_ptr<const font> from_memory(std::span<const std::uint8_t> bytes,
                                                 std::string name);
  /// The process-wide default font (see the file comment for the search order), loaded once.
  /// \throws error naming every place looked at when no font is found.
  static std::shared_ptr<const font> default_font();

  /// Where the font came from (a path, or "<embedded DejaVuSans.ttf>").
  [[nodiscard]] const std::string& name() const noexcept;

  ~font();
  font(const font&) = delete;
  font& operator=(const font&) = delete;

  struct impl;
  /// Internal; used by the renderer.
  [[nodiscard]] const impl& internals() const noexcept { return *impl_; }

 private:
  explicit font(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// The path default_font() reads when neither ATTNPOOL_FONT nor an embedded font applies.
std::filesystem::path default_font_path();

/// Horizontal anchoring of a text: which side of its ink box sits at the anchor point.
enum class h_align { left, center, right };
/// Vertical anchoring, as matplotlib's `va`: the line box is the font's ascent above and descent
/// below the baseline (grown to the ink where a glyph sticks out).
enum class v_align { baseline, top, center, bottom, center_baseline };

/// Size and placement of a laid-out single-line text, in pixels, relative to its pen origin on
/// the baseline.
struct text_extent {
  double ink_left = 0;   ///< left edge of the ink relative to the pen origin
  double ink_right = 0;  ///< right edge of the ink
  double ascent = 0;     ///< line box above the baseline (>= 0)
  double descent = 0;    ///< line box below the baseline (>= 0)
  double advance = 0;    ///< pen advance of the whole string
  [[nodiscard]] double width() const noexcept { return ink_right - ink_left; }
  [[nodiscard]] double height() const noexcept { return ascent + descent; }
};

/// Measures UTF-8 `text` at `size_px` pixels per em. Empty text measures zero width.
text_extent measure_text(const font& f, std::string_view text, double size_px);

// ---- the canvas ---------------------------------------------------------------------------------

struct point {
  double x = 0;
  double y = 0;
};

/// An axis-aligned rectangle [x0, x1) x [y0, y1) in pixels.
struct rect {
  double x0 = 0;
  double y0 = 0;
  double x1 = 0;
  double y1 = 0;
  [[nodiscard]] double width() const noexcept { return x1 - x0; }
  [[nodiscard]] double height() const noexcept { return y1 - y0; }
};

/// Anti-aliased drawing onto a canvas_view, with source-over alpha blending. Every primitive
/// goes through one clipping routine: nothing is ever written outside clip() (which always lies
/// inside the view). The canvas does not own the pixels.
class canvas {
 public:
  explicit canvas(canvas_view target);

  [[nodiscard]] const canvas_view& target() const noexcept { return view_; }
  /// Restricts drawing to `r` intersected with the view. Fractional edges clip with coverage.
  void set_clip(rect r) noexcept;
  /// Clips to the whole view again.
  void reset_clip() noexcept;
  [[nodiscard]] rect clip() const noexcept { return clip_; }

  /// Blends `c` over every pixel of the clip rectangle.
  void fill(color c);
  /// Fills `r`; fractional edges get partial coverage.
  void fill_rect(rect r, color c);
  /// Strokes the outline of `r` with a pen of `line_width` pixels centred on its edges.
  void stroke_rect(rect r, double line_width, color c);
  /// A straight segment with round caps, `width` pixels wide.
  void line(point a, point b, double width, color c);
  /// Connected segments with round joins and caps. Each pixel is blended once, so overlapping
  /// segments of a translucent line do not darken.
  void polyline(std::span<const point> pts, double width, color c);
  /// A disc of the given radius.
  void fill_circle(point centre, double radius, color c);
  /// Draws single-line UTF-8 `text` at `size_px` pixels per em. The anchor is placed per
  /// `ha`/`va`; the ink box is snapped to whole pixels like matplotlib's Agg backend. Empty text
  /// draws nothing. Returns the ink box actually covered (empty rect for empty text).
  rect text(const font& f, std::string_view text, point anchor, double size_px, color c,
            h_align ha = h_align::left, v_align va = v_align::baseline);

  /// The shared clipping routine: the whole pixels that a shape with bounding box `bounds` may
  /// touch, intersected with the clip rectangle, as [x0, x1) x [y0, y1). Empty when x0 >= x1 or
  /// y0 >= y1. Public so that tests can check it directly.
  struct pixel_span {
    int x0, y0, x1, y1;
    [[nodiscard]] bool empty() const noexcept { return x0 >= x1 || y0 >= y1; }
  };
  [[nodiscard]] pixel_span clip_bounds(rect bounds) const noexcept;

  /// Blends `c` at pixel (x, y) with the given coverage in [0, 1], times the clip rectangle's
  /// own coverage of that pixel. (x, y) must come from clip_bounds().
  void blend(int x, int y, color c, float coverage) noexcept;

 private:
  canvas_view view_;
  rect clip_;
  std::vector<float> scratch_;  // coverage mask reused by polyline()
};

// ---- colormaps ----------------------------------------------------------------------------------

/// A colormap: a 256-entry lookup table built as matplotlib builds its own (N = 256), applied as
/// matplotlib applies it: t in [0, 1] selects entry min(floor(256 t), 255), and the 8-bit colour
/// truncates 255 * entry like matplotlib's `to_rgba(bytes=True)`.
class colormap {
 public:
  /// matplotlib's 'bone', from its published segment data (_bone_data in matplotlib/_cm.py).
  static const colormap& bone();
  /// matplotlib's 'viridis', its published 256-entry table.
  static const colormap& viridis();
  /// matplotlib's 'gray': black to white.
  static const colormap& gray();
  /// "bone", "viridis" or "gray". \throws invalid_argument naming the unknown name.
  static const colormap& by_name(std::string_view name);

  /// A piecewise-linear colormap from matplotlib-style segment data: per channel, rows of
  /// (x, y_left, y_right) with x rising from 0 to 1.
  using segments = std::vector<std::array<double, 3>>;
  static colormap from_segments(std::string name, const segments& red, const segments& green,
                                const segments& blue);
  /// A listed colormap (matplotlib's ListedColormap) from exactly 256 RGB rows in [0, 1].
  static colormap from_table(std::string name, std::span<const std::array<double, 3>> rows);

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// The lookup-table entry for t (clamped to [0, 1]; NaN maps to transparent).
  [[nodiscard]] std::array<double, 3> rgb(double t) const noexcept;
  /// The 8-bit colour for t, as matplotlib writes it into an image.
  [[nodiscard]] color operator()(double t) const noexcept;
  /// The 256 8-bit colours.
  [[nodiscard]] const std::array<color, 256>& table() const noexcept { return bytes_; }

 private:
  std::string name_;
  std::array<std::array<double, 3>, 256> lut_{};
  std::array<color, 256> bytes_{};
  void finish();
};

/// Rasterises matrix `m` with nearest-neighbour sampling into `dest` (the image's full extent;
/// cell (i, j) covers columns [dest.x0 + j * w, +w) and rows [dest.y0 + i * h, +h) with
/// w = dest.width() / cols, h = dest.height() / rows). Each output pixel samples the cell under
/// its centre, so the cost is one lookup per pixel whatever the matrix size (a 4096 x 4096
/// matrix costs the same as an 8 x 8 one). Values map linearly from [vmin, vmax] to [0, 1];
/// NaN cells are left untouched. Clipped by the canvas' clip rectangle.
void draw_matrix(canvas& cv, const_view m, rect dest, const colormap& cmap, double vmin,
                 double vmax);

// ---- figures ------------------------------------------------------------------------------------

/// Marker of a plotted series.
enum class marker { none, circle };

/// How a series is drawn. Sizes are in points (1/72 inch), as in matplotlib.
struct line_style {
  std::optional<render::color> color;  ///< empty: the next colour of the tab10 cycle
  bool draw_line = true;               ///< connect the points
  double line_width_pt = 1.5;          ///< matplotlib's lines.linewidth
  render::marker marker = render::marker::none;
  double marker_size_pt = 6.0;        ///< marker diameter (matplotlib's lines.markersize)
  double marker_edge_width_pt = 1.0;  ///< edge stroke in the face colour
  std::string label;                  ///< legend entry; empty: not in the legend
};

/// Parses a matplotlib format string: an optional colour letter (bgrcmykw), an optional marker
/// ('o') and an optional line style ('-'). "o" gives markers only, "-" or "" a line, "o-" both.
/// \throws invalid_argument naming the format on anything else (e.g. "--", "x").
line_style parse_format(std::string_view fmt);

/// Ticks of an axis: either automatic (matplotlib's MaxNLocator with steps 1, 2, 2.5, 5, 10),
/// a fixed step (matplotlib's MultipleLocator), or explicit positions with optional labels.
struct tick_spec {
  double step = 0;                  ///< > 0: ticks at every multiple of step inside the limits
  std::vector<double> positions;    ///< non-empty: exactly these ticks
  std::vector<std::string> labels;  ///< labels for `positions` (or for the multiples, in order
                                    ///< from the first visible one); empty: formatted numbers
  /// Labels that would overlap are thinned to every k-th (k = 1, 2, 5, 10, ...) while all tick
  /// marks stay. matplotlib overlaps them instead; set false to do the same.
  bool thin_labels = true;
};

/// Scale of an axis, as matplotlib's `set_xscale`.
enum class axis_scale {
  linear,  ///< the default
  /// Base-10 logarithmic: data maps through log10, the margins apply in log space, major ticks
  /// sit at the decades (LogLocator: at most one per `stride` decades, the stride chosen as
  /// matplotlib does from the axis length) labelled 10^k with Unicode superscript digits
  /// ("10⁻¹"), minor ticks at 2..9 x 10^k without labels (none when the view spans more than 10
  /// decades or the major stride is above 1). When fewer than two decades are in view, the minor
  /// ticks carry labels ("2×10⁻¹") instead, dropping those that would overlap. Every x value
  /// must then be > 0.
  log,
};

/// Where the legend goes.
enum class legend_loc { best, upper_right, upper_left, lower_left, lower_right };

/// Options of axes::matshow.
struct matshow_options {
  const colormap* cmap = nullptr;          ///< null: viridis (matplotlib's default)
  std::optional<double> vmin;              ///< empty: the matrix minimum
  std::optional<double> vmax;              ///< empty: the matrix maximum
  std::vector<std::string> row_labels;     ///< labels of rows 0, 1, ... (y ticks at every row)
  std::vector<std::string> column_labels;  ///< labels of columns 0, 1, ... (x ticks on top)
};

class figure;

/// One set of axes: data series, an optional matrix image, ticks, labels, title, legend.
/// Artists are recorded and drawn when the figure renders, so limits and ticks see all the data.
class axes {
 public:
  /// A line and/or markers through (x[i], y[i]); `fmt` as parse_format. Non-finite points break
  /// the line. \throws invalid_argument when the sizes differ, fmt is bad, or an x value is <= 0
  ///         on a log x axis (naming it).
  void plot(std::span<const double> x, std::span<const double> y, std::string_view fmt = "-",
            std::string label = {});
  /// \overload
  void plot(std::span<const float> x, std::span<const float> y, std::string_view fmt = "-",
            std::string label = {});
  /// \overload with a full style
  void plot(std::span<const double> x, std::span<const double> y, line_style style);
  /// Circle markers ('o') of the given diameter in points, like matplotlib's scatter(s=d*d).
  void scatter(std::span<const double> x, std::span<const double> y, double size_pt = 6.0,
               std::optional<color> c = std::nullopt, std::string label = {});
  /// \overload
  void scatter(std::span<const float> x, std::span<const float> y, double size_pt = 6.0,
               std::optional<color> c = std::nullopt, std::string label = {});

  /// Shows matrix `m` like matplotlib's matshow: cell (i, j) centred on (j, i), row 0 at the
  /// top, equal aspect, x ticks on top, nearest-neighbour resampling. The matrix is copied.
  /// \throws invalid_argument on an empty matrix, vmin > vmax, or a log x axis.
  void matshow(const_view m, const matshow_options& opts = {});
  /// Adds a colorbar for the matrix to the right of the axes (matplotlib's fig.colorbar).
  /// \throws invalid_argument when matshow was not called first.
  void colorbar();

  void set_title(std::string title) { title_ = std::move(title); }
  void set_xlabel(std::string label) { xlabel_ = std::move(label); }
  void set_ylabel(std::string label) { ylabel_ = std::move(label); }
  /// Fixes the x limits. \throws invalid_argument when they are not finite or equal, or not
  /// > 0 on a log x axis.
  void set_xlim(double lo, double hi);
  void set_ylim(double lo, double hi);
  /// Linear (the default) or logarithmic x axis; may be called before or after the data.
  /// \throws invalid_argument for axis_scale::log when an x value already plotted or an x limit
  ///         is <= 0 (naming it), after matshow, or with a fixed tick step (set_xticks).
  void set_xscale(axis_scale scale);
  [[nodiscard]] axis_scale xscale() const noexcept { return xscale_; }
  /// \throws invalid_argument for a fixed step (tick_spec::step) on a log x axis; explicit
  ///         positions must then be > 0.
  void set_xticks(tick_spec ticks);
  void set_yticks(tick_spec ticks) { yticks_ = std::move(ticks); }
  /// Shows a legend of the labelled series.
  void legend(legend_loc loc = legend_loc::best) { legend_ = loc; }

 private:
  friend class figure;
  friend class axes_painter;
  axes() = default;
  // Throws invalid_argument naming the first x <= 0, for `what` (the calling function).
  static void check_log_x(const char* what, std::span<const double> x);

  struct series {
    std::vector<double> x, y;
    line_style style;
  };
  struct matrix {
    std::vector<float> values;
    std::size_t rows = 0, cols = 0;
    const colormap* cmap = nullptr;
    double vmin = 0, vmax = 1;
  };
  std::vector<series> series_;
  std::optional<matrix> matrix_;
  bool colorbar_ = false;
  std::size_t cycle_ = 0;
  std::string title_, xlabel_, ylabel_;
  std::optional<std::array<double, 2>> xlim_, ylim_;
  tick_spec xticks_, yticks_;
  axis_scale xscale_ = axis_scale::linear;
  std::optional<legend_loc> legend_;
};

/// A figure: a canvas of width x height inches at `dpi`, holding one axes placed where
/// matplotlib's `fig.add_subplot(111)` puts it (left 0.125, right 0.9, bottom 0.11, top 0.88).
class figure {
 public:
  /// matplotlib's default is 6.4 x 4.8 in at 100 dpi (640 x 480 px).
  /// \throws invalid_argument unless the sizes are positive and the canvas at most 16384 px.
  explicit figure(double width_in = 6.4, double height_in = 4.8, double dpi = 100.0);

  /// The axes (created on first use).
  axes& add_subplot();
  /// Uses `f` instead of font::default_font() for every text of this figure.
  void set_font(std::shared_ptr<const font> f) { font_ = std::move(f); }

  [[nodiscard]] int width_px() const noexcept { return width_px_; }
  [[nodiscard]] int height_px() const noexcept { return height_px_; }

  /// Draws the figure into a new image. \throws error when no font can be loaded.
  [[nodiscard]] image render() const;
  /// render() then save_png(). \throws error naming the path when it cannot be written.
  void save_png(const std::filesystem::path& path) const;

 private:
  double dpi_;
  int width_px_;
  int height_px_;
  std::unique_ptr<axes> axes_;
  std::shared_ptr<const font> font_;
};

}  // namespace attnpool::render
