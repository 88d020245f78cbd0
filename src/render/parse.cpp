// Colours and matplotlib-style format strings ("o", "-", "r-o", "C1", "#rrggbb", "0.8").
#include <attnpool/render.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>

namespace attnpool::render {

color parse_color(std::string_view t) {
  const auto bad = [&] {
    return invalid_argument(detail::concat("parse_color: '", t,
                                           "' is not a colour (want #rrggbb, "
                                           "#rrggbbaa, one of bgrcmykw, C0..C9 or a grey level)"));
  };
  if (t.size() == 1) {
    switch (t[0]) {
      case 'b':
        return {0, 0, 255, 255};
      case 'g':
        return {0, 128, 0, 255};
      case 'r':
        return {255, 0, 0, 255};
      case 'c':
        return {0, 191, 191, 255};
      case 'm':
        return {191, 0, 191, 255};
      case 'y':
        return {191, 191, 0, 255};
      case 'k':
        return kBlack;
      case 'w':
        return kWhite;
      default:
        break;
    }
  }
  if (t.size() == 2 && t[0] == 'C' && t[1] >= '0' && t[1] <= '9')
    return kTab10[static_cast<std::size_t>(t[1] - '0')];
  if (!t.empty() && t[0] == '#' && (t.size() == 7 || t.size() == 9)) {
    std::uint8_t ch[4] = {0, 0, 0, 255};
    for (std::size_t k = 0; k * 2 + 1 < t.size(); ++k) {
      unsigned v = 0;
      const char* b = t.data() + 1 + 2 * k;
      const auto [p, ec] = std::from_chars(b, b + 2, v, 16);
      if (ec != std::errc() || p != b + 2) throw bad();
      ch[k] = static_cast<std::uint8_t>(v);
    }
    return {ch[0], ch[1], ch[2], ch[3]};
  }
  double g = -1;
  const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), g);
  if (ec == std::errc() && p == t.data() + t.size() && g >= 0 && g <= 1) {
    const auto v = static_cast<std::uint8_t>(std::lround(g * 255));
    return {v, v, v, 255};
  }
  throw bad();
}

line_style parse_format(std::string_view fmt) {
  line_style s;
  bool has_marker = false, has_line = false;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    const char ch = fmt[i];
    if (ch == 'o' && !has_marker) {
      has_marker = true;
    } else if (ch == '-' && !has_line && (i + 1 == fmt.size() || fmt[i + 1] != '-')) {
      has_line = true;
    } else if (std::string_view("bgrcmykw").find(ch) != std::string_view::npos && !s.color) {
      s.color = parse_color(fmt.substr(i, 1));
    } else {
      throw invalid_argument(detail::concat("plot: unsupported format string '", fmt,
                                            "' (supported: optional colour letter, 'o', '-')"));
    }
  }
  s.marker = has_marker ? marker::circle : marker::none;
  s.draw_line = has_line || !has_marker;  // matplotlib: "o" alone draws no line
  return s;
}

}  // namespace attnpool::render
