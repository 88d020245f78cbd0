// Draws bench/RESULTS.md's scaling plots with attnpool's own renderer: time against n * m on
// log-log axes, one line per system, from the results.csv that bench/peers/peers.py writes.
//
//   plot_scaling results.csv scaling.png [--title TEXT] [--d D] [--dv DV]
//   plot_scaling results.csv grid.png --grid [--title TEXT]
//
// The first form draws the rows with the given d and dv (default 1, 1), titled TEXT (default
// "attention pooling, d = D, dv = DV"). --grid draws one panel
// per (d, dv) in the file, d across and dv down, side by side in one PNG, every panel on the same
// axes limits and each system in the same colour in every panel, so that panels compare by eye;
// the panel titles are "TEXT, d = D, dv = DV". Rows whose `ms` is not a number (OOM,
// unavailable, skipped) are left out. The renderer's y axis is linear, so the plot draws log10 of
// both quantities and labels the ticks as powers of ten.
#include <attnpool/error.hpp>
#include <attnpool/render.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace render = attnpool::render;

std::vector<std::string> split_csv_line(const std::string& line) {
  // peers.py writes plain fields (no quotes, no embedded commas) except `note`, which is last.
  std::vector<std::string> fields;
  std::stringstream ss(line);
  std::string f;
  while (std::getline(ss, f, ',')) fields.push_back(f);
  return fields;
}

std::string superscript(int k) {
  static const char* digits[] = {"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
  std::string s = k < 0 ? "⁻" : "";
  const std::string n = std::to_string(std::abs(k));
  for (char c : n) s += digits[c - '0'];
  return s;
}

// Integer decades covering [lo, hi] (log10 units), as tick positions labelled 10^k.
render::tick_spec decades(double lo, double hi) {
  render::tick_spec t;
  for (int k = static_cast<int>(std::floor(lo)); k <= static_cast<int>(std::ceil(hi)); ++k) {
    t.positions.push_back(k);
    t.labels.push_back("10" + superscript(k));
  }
  return t;
}

// One timed row of results.csv, in log10 units.
struct point_row {
  std::string system;
  int d = 0, dv = 0;
  double log_pairs = 0, log_ms = 0;
};

std::vector<point_row> read_results(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw attnpool::error("plot_scaling: cannot read " + path);
  std::string line;
  std::getline(in, line);
  const auto header = split_csv_line(line);
  auto column = [&](const std::string& name) {
    for (std::size_t c = 0; c < header.size(); ++c)
      if (header[c] == name) return c;
    throw attnpool::error("plot_scaling: " + path + " has no column '" + name + "'");
  };
  const std::size_t c_sys = column("system"), c_n = column("n"), c_m = column("m"),
                    c_d = column("d"), c_dv = column("dv"), c_ms = column("ms");
  std::vector<point_row> rows;
  while (std::getline(in, line)) {
    const auto f = split_csv_line(line);
    if (f.size() <= c_ms) continue;
    char* end = nullptr;
    const double ms = std::strtod(f[c_ms].c_str(), &end);
    if (end == f[c_ms].c_str() || !(ms > 0)) continue;  // OOM, unavailable, skipped
    rows.push_back({f[c_sys], std::stoi(f[c_d]), std::stoi(f[c_dv]),
                    std::log10(std::stod(f[c_n]) * std::stod(f[c_m])), std::log10(ms)});
  }
  return rows;
}

struct limits {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
};

limits bounds(const std::vector<point_row>& rows) {
  limits l;
  for (const auto& r : rows) {
    l.xlo = std::min(l.xlo, r.log_pairs), l.xhi = std::max(l.xhi, r.log_pairs);
    l.ylo = std::min(l.ylo, r.log_ms), l.yhi = std::max(l.yhi, r.log_ms);
  }
  l.xlo = std::floor(l.xlo), l.xhi = std::ceil(l.xhi);
  l.ylo = std::floor(l.ylo), l.yhi = std::ceil(l.yhi);
  return l;
}

bool is_attnpool(const std::string& name) { return name.rfind("attnpool", 0) == 0; }

// One panel: the rows of one (d, dv), one line per system, each system in colour colours[name];
// with its own legend or none (the grid draws one for all panels).
render::figure panel(const std::vector<point_row>& rows, int d, int dv, const limits& lim,
                     const std::map<std::string, render::color>& colours, const std::string& title,
                     double width_in, double height_in, bool with_legend) {
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> series;
  for (const auto& r : rows) {
    if (r.d != d || r.dv != dv) continue;
    auto& s = series[r.system];
    s.first.push_back(r.log_pairs);
    s.second.push_back(r.log_ms);
  }
  render::figure fig(width_in, height_in);
  auto& ax = fig.add_subplot();
  for (auto& [name, xy] : series) {
    render::line_style style = render::parse_format("o-");
    style.label = name;
    style.marker_size_pt = 4.0;
    style.color = colours.at(name);
    if (is_attnpool(name)) style.line_width_pt = 2.5;  // the subject stands out
    ax.plot(xy.first, xy.second, style);
  }
  ax.set_xlim(lim.xlo, lim.xhi);
  ax.set_ylim(lim.ylo, lim.yhi);
  ax.set_xticks(decades(lim.xlo, lim.xhi));
  ax.set_yticks(decades(lim.ylo, lim.yhi));
  ax.set_xlabel("pairs n·m");
  ax.set_ylabel("time (ms)");
  ax.set_title(title);
  if (with_legend) ax.legend(render::legend_loc::upper_left);
  return fig;
}

// The grid's one legend, in a strip right of the panels: in a panel, slow peers at small n·m
// fill the upper left and attnpool at large n·m the lower right, so no corner is free in all.
void draw_legend(render::image& sheet, int x0, int y0,
                 const std::map<std::string, render::color>& colours) {
  const auto font = render::font::default_font();
  render::canvas c(sheet.view());
  constexpr double kText = 100.0 / 72.0 * 11.0;  // 11 pt at 100 dpi
  double y = y0 + kText;
  for (const auto& [name, colour] : colours) {
    c.line({x0 + 0.0, y}, {x0 + 28.0, y}, is_attnpool(name) ? 3.5 : 2.1, colour);
    c.fill_circle({x0 + 14.0, y}, 3.0, colour);
    c.text(*font, name, {x0 + 36.0, y}, kText, render::kBlack, render::h_align::left,
           render::v_align::center_baseline);
    y += 1.8 * kText;
  }
}

// Copies `src` into `dst` with its top-left corner at (x0, y0); `dst` must be large enough.
void blit(const render::image& src, render::image& dst, int x0, int y0) {
  render::canvas_view to = dst.view();
  for (int y = 0; y < src.height(); ++y)
    std::memcpy(to.pixels + (y0 + y) * to.stride + 4 * static_cast<std::ptrdiff_t>(x0),
                src.data() + static_cast<std::size_t>(y) * src.width() * 4,
                static_cast<std::size_t>(src.width()) * 4);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: plot_scaling results.csv out.png [--title TEXT] [--d D] [--dv DV]\n"
                 "       plot_scaling results.csv out.png --grid [--title TEXT]\n";
    return 2;
  }
  std::string title;
  int want_d = 1, want_dv = 1;
  bool grid = false;
  for (int i = 3; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--grid") {
      grid = true;
      continue;
    }
    if (i + 1 >= argc) throw attnpool::invalid_argument("plot_scaling: " + flag + " needs a value");
    if (flag == "--title") title = argv[++i];
    else if (flag == "--d") want_d = std::stoi(argv[++i]);
    else if (flag == "--dv") want_dv = std::stoi(argv[++i]);
    else throw attnpool::invalid_argument("plot_scaling: unknown flag '" + flag + "'");
  }
  const std::vector<point_row> rows = read_results(argv[1]);

  // One colour per system over the whole file, in name order, so a system keeps its colour in
  // every panel and between the single and the grid forms.
  std::map<std::string, render::color> colours;
  for (const auto& r : rows) colours[r.system];
  std::size_t next = 0;
  for (auto& [name, c] : colours) c = render::kTab10[next++ % render::kTab10.size()];

  if (!grid) {
    std::vector<point_row> sel;
    for (const auto& r : rows)
      if (r.d == want_d && r.dv == want_dv) sel.push_back(r);
    if (sel.empty()) throw attnpool::error("plot_scaling: no timed rows with that d and dv");
    const std::string t = !title.empty() ? title
                                         : "attention pooling, d = " + std::to_string(want_d) +
                                               ", dv = " + std::to_string(want_dv);
    panel(sel, want_d, want_dv, bounds(sel), colours, t, 6.4, 4.8, true).save_png(argv[2]);
    std::printf("plot_scaling: %d, %d -> %s\n", want_d, want_dv, argv[2]);
    return 0;
  }

  if (rows.empty()) throw attnpool::error("plot_scaling: no timed rows");
  std::set<int> ds, dvs;
  for (const auto& r : rows) ds.insert(r.d), dvs.insert(r.dv);
  const limits lim = bounds(rows);
  constexpr double kPanelW = 6.4, kPanelH = 4.8;  // inches at 100 dpi: 640 x 480 px a panel
  std::vector<render::image> panels;
  for (int dv : dvs)
    for (int d : ds) {
      const std::string t = (title.empty() ? "" : title + ", ") + "d = " + std::to_string(d) +
                            ", dv = " + std::to_string(dv);
      panels.push_back(panel(rows, d, dv, lim, colours, t, kPanelW, kPanelH, false).render());
    }
  const int pw = panels.front().width(), ph = panels.front().height();
  const int cols = static_cast<int>(ds.size());
  constexpr int kLegendW = 260;
  render::image sheet(pw * cols + kLegendW, ph * static_cast<int>(dvs.size()));
  for (std::size_t p = 0; p < panels.size(); ++p)
    blit(panels[p], sheet, pw * static_cast<int>(p % cols), ph * static_cast<int>(p / cols));
  draw_legend(sheet, pw * cols + 10, ph / 10, colours);
  render::save_png(sheet, argv[2]);
  std::printf("plot_scaling: %zu panels (%zu d x %zu dv) -> %s\n", panels.size(), ds.size(),
              dvs.size(), argv[2]);
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
