// Fonts and text: stb_truetype, compiled into this translation unit only (STBTT_STATIC), so
// that an application embedding its own copy of stb_truetype cannot clash with ours.
#include <attnpool/render.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>

#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb_truetype.h>

#ifndef ATTNPOOL_FONT_PATH
#define ATTNPOOL_FONT_PATH "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#endif

#if ATTNPOOL_EMBEDDED_FONT
extern "C" const unsigned char attnpool_embedded_font[];
extern "C" const unsigned long attnpool_embedded_font_size;
#endif

namespace attnpool::render {

struct font::impl {
  std::vector<std::uint8_t> bytes;
  stbtt_fontinfo info{};
  std::string name;
  int units_per_em = 2048;
  double ascent = 0;   // font units, > 0
  double descent = 0;  // font units, > 0
};

namespace {

// Decodes UTF-8; malformed sequences become U+FFFD.
std::vector<int> decode_utf8(std::string_view s) {
  std::vector<int> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80           ? 1
              : (b0 >> 5) == 0x6  ? 2
              : (b0 >> 4) == 0xe  ? 3
              : (b0 >> 3) == 0x1e ? 4
                                  : 0;
    if (len == 0 || i + static_cast<std::size_t>(len) > s.size()) {
      out.push_back(0xfffd);
      ++i;
      continue;
    }
    int cp = len == 1 ? b0 : b0 & (0x7f >> len);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      ok = ok && (b >> 6) == 0x2;
      cp = (cp << 6) | (b & 0x3f);
    }
    out.push_back(ok ? cp : 0xfffd);
    i += ok ? static_cast<std::size_t>(len) : 1;
  }
  return out;
}

// One glyph of a laid-out line: its index and pen position relative to the origin.
struct placed_glyph {
  int glyph;
  double x;
};

struct layout {
  std::vector<placed_glyph> glyphs;
  text_extent extent;
};

layout lay_out(const font::impl& f, std::string_view text, double size_px) {
  layout out;
  const double scale = size_px / f.units_per_em;
  out.extent.ascent = f.ascent * scale;
  out.extent.descent = f.descent * scale;
  const std::vector<int> cps = decode_utf8(text);
  double pen = 0;
  double ink_left = 0, ink_right = 0, ink_top = 0, ink_bottom = 0;
  bool any_ink = false;
  int prev = 0;
  for (int cp : cps) {
    int g = stbtt_FindGlyphIndex(&f.info, cp);
    if (g == 0) g = stbtt_FindGlyphIndex(&f.info, 0xfffd);
    // Fractional advances, as matplotlib up to 3.10 lays text out (hinting_factor 8); 3.11
    // rounds them to whole pixels and sets words some 5 % wider.
    if (prev != 0) pen += stbtt_GetGlyphKernAdvance(&f.info, prev, g) * scale;
    int advance = 0, lsb = 0;
    stbtt_GetGlyphHMetrics(&f.info, g, &advance, &lsb);
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    if (stbtt_GetGlyphBox(&f.info, g, &x0, &y0, &x1, &y1) && x1 > x0 && y1 > y0) {
      const double l = pen + x0 * scale, r = pen + x1 * scale;
      ink_left = any_ink ? std::min(ink_left, l) : l;
      ink_right = any_ink ? std::max(ink_right, r) : r;
      ink_top = any_ink ? std::max(ink_top, y1 * scale) : y1 * scale;
      ink_bottom = any_ink ? std::min(ink_bottom, y0 * scale) : y0 * scale;
      any_ink = true;
    }
    out.glyphs.push_back({g, pen});
    pen += advance * scale;
    prev = g;
  }
  out.extent.advance = pen;
  if (any_ink) {
    out.extent.ink_left = ink_left;
    out.extent.ink_right = ink_right;
    // matplotlib grows the line box to the ink where a glyph sticks out of the font's metrics.
    out.extent.ascent = std::max(out.extent.ascent, ink_top);
    out.extent.descent = std::max(out.extent.descent, -ink_bottom);
  }
  return out;
}

std::unique_ptr<font::impl> make_impl(std::vector<std::uint8_t> bytes, std::string name) {
  auto p = std::make_unique<font::impl>();
  p->bytes = std::move(bytes);
  p->name = std::move(name);
  const int offset = p->bytes.size() >= 12 ? stbtt_GetFontOffsetForIndex(p->bytes.data(), 0) : -1;
  if (offset < 0 || !stbtt_InitFont(&p->info, p->bytes.data(), offset)) {
    throw error(detail::concat("font: '", p->name, "' is not a TrueType font"));
  }
  p->units_per_em =
      static_cast<int>(std::lround(1.0 / stbtt_ScaleForMappingEmToPixels(&p->info, 1.0f)));
  // matplotlib sizes a text line from the OS/2 typographic ascender and descender (hhea when a
  // font has no OS/2 table).
  int asc = 0, desc = 0, gap = 0;
  if (!stbtt_GetFontVMetricsOS2(&p->info, &asc, &desc, &gap))
    stbtt_GetFontVMetrics(&p->info, &asc, &desc, &gap);
  p->ascent = asc;
  p->descent = -desc;
  return p;
}

}  // namespace

font::font(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
font::~font() = default;

const std::string& font::name() const noexcept {
  return impl_->name;
}

std::shared_ptr<const font> font::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw error(detail::concat("font: cannot open '", path.string(), "': ", std::strerror(errno)));
  }
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (in.bad()) throw error(detail::concat("font: error reading '", path.string(), "'"));
  return std::shared_ptr<const font>(new font(make_impl(std::move(bytes), path.string())));
}

std::shared_ptr<const font> font::from_memory(std::span<const std::uint8_t> bytes,
                                              std::string name) {
  return std::shared_ptr<const font>(
      new font(make_impl(std::vector<std::uint8_t>(bytes.begin(), bytes.end()), std::move(name))));
}

std::filesystem::path default_font_path() {
  return ATTNPOOL_FONT_PATH;
}

std::shared_ptr<const font> font::default_font() {
  static std::mutex mutex;
  static std::shared_ptr<const font> cached;
  const std::lock_guard<std::mutex> lock(mutex);
  if (cached) return cached;
  // An explicit ATTNPOOL_FONT must work: falling back silently would hide the user's mistake.
  if (const char* env = std::getenv("ATTNPOOL_FONT"); env != nullptr && *env != '\0') {
    try {
      cached = load(env);
    } catch (const error& e) {
      throw error(detail::concat("font: ATTNPOOL_FONT='", env, "' is unusable: ", e.what()));
    }
    return cached;
  }
#if ATTNPOOL_EMBEDDED_FONT
  cached =
      from_memory({attnpool_embedded_font, static_cast<std::size_t>(attnpool_embedded_font_size)},
                  "<embedded DejaVuSans.ttf>");
  return cached;
#else
  const std::filesystem::path path = default_font_path();
  if (!std::filesystem::exists(path)) {
    throw error(detail::concat(
        "font: no font found. Looked at $ATTNPOOL_FONT (unset) and '", path.string(),
        "' (missing). Install DejaVu Sans (Debian: apt-get install fonts-dejavu-core), point "
        "ATTNPOOL_FONT at a .ttf file, or build with -DATTNPOOL_EMBED_FONT=ON"));
  }
  cached = load(path);
  return cached;
#endif
}

text_extent measure_text(const font& f, std::string_view text, double size_px) {
  ATTNPOOL_EXPECTS(std::isfinite(size_px) && size_px > 0, "measure_text: size_px must be > 0, got ",
                   size_px);
  return lay_out(f.internals(), text, size_px).extent;
}

rect canvas::text(const font& f, std::string_view str, point anchor, double size_px, color c,
                  h_align ha, v_align va) {
  ATTNPOOL_EXPECTS(std::isfinite(size_px) && size_px > 0, "canvas::text: size_px must be > 0, got ",
                   size_px);
  if (str.empty() || !std::isfinite(anchor.x) || !std::isfinite(anchor.y)) return {};
  const font::impl& fi = f.internals();
  const layout lay = lay_out(fi, str, size_px);
  const text_extent& e = lay.extent;
  if (e.width() <= 0) return {};  // only spaces: no ink
  const double ink_x = ha == h_align::left     ? anchor.x
                       : ha == h_align::center ? anchor.x - e.width() / 2
                                               : anchor.x - e.width();
  const double baseline = va == v_align::top               ? anchor.y + e.ascent
                          : va == v_align::bottom          ? anchor.y - e.descent
                          : va == v_align::center          ? anchor.y + (e.ascent - e.descent) / 2
                          : va == v_align::center_baseline ? anchor.y + e.ascent / 2
                                                           : anchor.y;
  // Like matplotlib's Agg backend, the text's bitmap lands on whole pixels: crisper stems, and
  // the same text looks the same wherever it is drawn.
  const double origin_x = std::round(ink_x) - e.ink_left;
  const double origin_y = std::round(baseline);
  const double scale = size_px / fi.units_per_em;
  std::vector<unsigned char> bitmap;
  for (const placed_glyph& g : lay.glyphs) {
    const double pen = origin_x + g.x;
    const double ipen = std::floor(pen);
    const auto shift = static_cast<float>(pen - ipen);
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    stbtt_GetGlyphBitmapBoxSubpixel(&fi.info, g.glyph, static_cast<float>(scale),
                                    static_cast<float>(scale), shift, 0.0f, &x0, &y0, &x1, &y1);
    const int w = x1 - x0, h = y1 - y0;
    if (w <= 0 || h <= 0) continue;
    const double left = ipen + x0, top = origin_y + y0;
    const pixel_span s = clip_bounds({left, top, left + w, top + h});
    if (s.empty()) continue;
    bitmap.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(h), 0);
    stbtt_MakeGlyphBitmapSubpixel(&fi.info, bitmap.data(), w, h, w, static_cast<float>(scale),
                                  static_cast<float>(scale), shift, 0.0f, g.glyph);
    const int bx = static_cast<int>(left), by = static_cast<int>(top);
    for (int y = s.y0; y < s.y1; ++y) {
      for (int x = s.x0; x < s.x1; ++x) {
        const unsigned char v = bitmap[static_cast<std::size_t>(y - by) * w + (x - bx)];
        if (v != 0) blend(x, y, c, static_cast<float>(v) / 255.0f);
      }
    }
  }
  const double ink_left = std::round(ink_x);
  return {ink_left, origin_y - e.ascent, ink_left + e.width(), origin_y + e.descent};
}

}  // namespace attnpool::render
