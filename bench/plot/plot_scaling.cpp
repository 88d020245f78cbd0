// Draws bench/RESULTS.md's scaling plot with attnpool's own renderer: time against n * m on
// log-log axes, one line per system, from the results.csv that bench/peers/peers.py writes.
//
//   plot_scaling results.csv scaling.png [--title TEXT] [--d D] [--dv DV]
//
// Rows whose `ms` is not a number (OOM, unavailable) are left out; only rows with the given d
// and dv (default 1, 1) are drawn. The renderer's axes are linear, so the plot draws log10 of
// both quantities and labels the ticks as powers of ten.
#include <attnpool/error.hpp>
#include <attnpool/render.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

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
attnpool::render::tick_spec decades(double lo, double hi) {
  attnpool::render::tick_spec t;
  for (int k = static_cast<int>(std::floor(lo)); k <= static_cast<int>(std::ceil(hi)); ++k) {
    t.positions.push_back(k);
    t.labels.push_back("10" + superscript(k));
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: plot_scaling results.csv scaling.png [--title TEXT] [--d D] [--dv DV]\n";
    return 2;
  }
  std::string title = "attention pooling, d = 1, dv = 1", want_d = "1", want_dv = "1";
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--title") title = argv[i + 1];
    else if (flag == "--d") want_d = argv[i + 1];
    else if (flag == "--dv") want_dv = argv[i + 1];
    else throw attnpool::invalid_argument("plot_scaling: unknown flag '" + flag + "'");
  }
  std::ifstream in(argv[1]);
  if (!in) throw attnpool::error(std::string("plot_scaling: cannot read ") + argv[1]);
  std::string line;
  std::getline(in, line);
  const auto header = split_csv_line(line);
  auto column = [&](const std::string& name) {
    for (std::size_t c = 0; c < header.size(); ++c)
      if (header[c] == name) return c;
    throw attnpool::error("plot_scaling: " + std::string(argv[1]) + " has no column '" + name + "'");
  };
  const std::size_t c_sys = column("system"), c_n = column("n"), c_m = column("m"),
                    c_d = column("d"), c_dv = column("dv"), c_ms = column("ms");

  // system -> (log10 pairs, log10 ms), in file order.
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> series;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  while (std::getline(in, line)) {
    const auto f = split_csv_line(line);
    if (f.size() <= c_ms || f[c_d] != want_d || f[c_dv] != want_dv) continue;
    char* end = nullptr;
    const double ms = std::strtod(f[c_ms].c_str(), &end);
    if (end == f[c_ms].c_str() || !(ms > 0)) continue;  // OOM, unavailable, skipped
    const double pairs = std::stod(f[c_n]) * std::stod(f[c_m]);
    auto& s = series[f[c_sys]];
    s.first.push_back(std::log10(pairs));
    s.second.push_back(std::log10(ms));
    xlo = std::min(xlo, s.first.back()), xhi = std::max(xhi, s.first.back());
    ylo = std::min(ylo, s.second.back()), yhi = std::max(yhi, s.second.back());
  }
  if (series.empty()) throw attnpool::error("plot_scaling: no timed rows with that d and dv");

  attnpool::render::figure fig(6.4, 4.8);
  auto& ax = fig.add_subplot();
  for (auto& [name, xy] : series) {
    attnpool::render::line_style style = attnpool::render::parse_format("o-");
    style.label = name;
    style.marker_size_pt = 4.0;
    ax.plot(xy.first, xy.second, style);
  }
  ax.set_xlim(std::floor(xlo), std::ceil(xhi));
  ax.set_ylim(std::floor(ylo), std::ceil(yhi));
  ax.set_xticks(decades(std::floor(xlo), std::ceil(xhi)));
  ax.set_yticks(decades(std::floor(ylo), std::ceil(yhi)));
  ax.set_xlabel("pairs n·m");
  ax.set_ylabel("time (ms)");
  ax.set_title(title);
  ax.legend(attnpool::render::legend_loc::upper_left);
  fig.save_png(argv[2]);
  std::printf("plot_scaling: %zu systems -> %s\n", series.size(), argv[2]);
  return 0;
} catch (const std::exception& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
