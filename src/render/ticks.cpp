// Tick locators and label formatters, after matplotlib.ticker, so that an axis gets the ticks
// matplotlib would give it.
#include "figure_detail.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

namespace attnpool::render::detail {
namespace {

// k written with Unicode superscript digits and minus, as mathtext sets 10^{k}.
std::string superscript(long k) {
  static constexpr const char* kDigits[10] = {
      "\xe2\x81\xb0", "\xc2\xb9",     "\xc2\xb2",     "\xc2\xb3",     "\xe2\x81\xb4",
      "\xe2\x81\xb5", "\xe2\x81\xb6", "\xe2\x81\xb7", "\xe2\x81\xb8", "\xe2\x81\xb9"};
  std::string out = k < 0 ? "\xe2\x81\xbb" : "";
  const std::string digits = std::to_string(k < 0 ? -k : k);
  for (const char ch : digits) out += kDigits[ch - '0'];
  return out;
}

}  // namespace

// matplotlib.ticker.MaxNLocator._raw_ticks (with scale_range and _Edge_integer), restricted to
// the ticks inside [vmin, vmax].
std::vector<double> max_n_locator(double vmin, double vmax, int nbins, std::vector<double> steps,
                                  bool integer) {
  if (vmax < vmin) std::swap(vmin, vmax);
  if (!(vmax > vmin)) return {vmin};
  const double dv = vmax - vmin;
  const double meanv = (vmax + vmin) / 2;
  double offset = 0;
  if (std::abs(meanv) / dv >= 100) {
    offset = std::copysign(std::pow(10.0, std::floor(std::log10(std::abs(meanv)))), meanv);
  }
  const double scale = std::pow(10.0, std::floor(std::log10(dv / nbins)));
  const double lo = vmin - offset, hi = vmax - offset;
  // _staircase: 0.1 * steps[:-1], steps, 10 * steps[1]
  std::vector<double> ext;
  for (std::size_t k = 0; k + 1 < steps.size(); ++k) ext.push_back(0.1 * steps[k]);
  ext.insert(ext.end(), steps.begin(), steps.end());
  ext.push_back(10 * steps[1]);
  std::vector<double> cand;
  for (double st : ext) {
    st *= scale;
    if (integer && !(st < 1 || std::abs(st - std::round(st)) < 0.001)) continue;
    cand.push_back(st);
  }
  const double raw_step = (hi - lo) / nbins;
  std::size_t istep = cand.size() - 1;
  for (std::size_t k = 0; k < cand.size(); ++k) {
    if (cand[k] >= raw_step) {
      istep = k;
      break;
    }
  }
  std::vector<double> ticks;
  for (std::size_t k = istep + 1; k-- > 0;) {
    double step = cand[k];
    if (integer && std::floor(hi) - std::ceil(lo) >= 1) step = std::max(1.0, step);
    const double best_vmin = std::floor(lo / step) * step;
    const double tol = std::max(1e-10, std::abs(offset / step) * 1e-10 * 10);
    const auto closeto = [&](double ms, double edge) { return std::abs(ms - edge) < tol; };
    const auto le = [&](double x) {
      const double d = std::floor(x / step), m = x - d * step;
      return closeto(m / step, 1) ? d + 1 : d;
    };
    const auto ge = [&](double x) {
      const double d = std::floor(x / step), m = x - d * step;
      return closeto(m / step, 0) ? d : d + 1;
    };
    const double low = le(lo - best_vmin), high = ge(hi - best_vmin);
    ticks.clear();
    int visible = 0;
    for (double i = low; i <= high; i += 1) {
      const double t = i * step + best_vmin;
      ticks.push_back(t + offset);
      if (t <= hi && t >= lo) ++visible;
    }
    if (visible >= 2) break;
  }
  std::vector<double> out;
  const double eps = 1e-10 * dv;
  for (double t : ticks) {
    if (t >= vmin - eps && t <= vmax + eps) out.push_back(std::abs(t) < eps ? 0.0 : t);
  }
  return out;
}

std::vector<double> multiple_locator(double vmin, double vmax, double step) {
  if (vmax < vmin) std::swap(vmin, vmax);
  std::vector<double> out;
  const double eps = 1e-10 * std::max(std::abs(vmax - vmin), step);
  for (double i = std::ceil((vmin - eps) / step); i * step <= vmax + eps; i += 1) {
    out.push_back(i * step == 0 ? 0.0 : i * step);
    if (out.size() > 100000) break;  // a step far too small for the range: enough is enough
  }
  return out;
}

// matplotlib.ticker.ScalarFormatter._set_format without offset or scientific notation: the
// fewest decimals that show every tick to within 1e-3 of the ticks' range.
std::vector<std::string> format_ticks(const std::vector<double>& locs) {
  std::vector<std::string> out;
  if (locs.empty()) return out;
  double lo = *std::min_element(locs.begin(), locs.end());
  double hi = *std::max_element(locs.begin(), locs.end());
  double range = hi - lo;
  if (range == 0) range = std::max(std::abs(lo), std::abs(hi));
  if (range == 0) range = 1;
  const int oom = static_cast<int>(std::floor(std::log10(range)));
  int sigfigs = std::max(0, 3 - oom);
  const double thresh = 1e-3 * std::pow(10.0, oom);
  while (sigfigs >= 0) {
    double worst = 0;
    const double p = std::pow(10.0, sigfigs);
    for (double v : locs) worst = std::max(worst, std::abs(v - std::round(v * p) / p));
    if (worst < thresh) {
      --sigfigs;
    } else {
      break;
    }
  }
  ++sigfigs;
  for (double v : locs) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", sigfigs, v);
    std::string s = buf;
    // "-0.0" is zero; a negative number gets matplotlib's Unicode minus (U+2212).
    if (s[0] == '-') {
      const bool zero = s.find_first_not_of("-0.") == std::string::npos;
      s = zero ? s.substr(1) : "\xe2\x88\x92" + s.substr(1);
    }
    out.push_back(std::move(s));
  }
  return out;
}

// matplotlib's LogFormatterSciNotation: "10⁻¹" at a decade, "2×10⁻¹" between decades (the
// coefficient rounded to what a tick at s x 10^k needs).
std::string log_label(double v) {
  const double e = std::floor(std::log10(v) + 1e-10);
  const double coeff = v / std::pow(10.0, e);
  const std::string decade = "10" + superscript(static_cast<long>(e));
  if (std::abs(coeff - std::round(coeff)) < 1e-9 && std::round(coeff) == 1) return decade;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", coeff);
  return std::string(buf) + "\xc3\x97" + decade;  // U+00D7 multiplication sign
}

// matplotlib.ticker.LogLocator(base 10).tick_values for the major ticks (subs = 1) and the minor
// ones (subs = 'auto': 2..9), restricted to [vmin, vmax]. numticks is the axis' tick space.
void log_locator(double vmin, double vmax, int numticks, std::vector<double>& major,
                 std::vector<double>& minor) {
  const double lmin = std::log10(vmin), lmax = std::log10(vmax);
  const auto numdec = static_cast<long>(std::floor(lmax) - std::ceil(lmin));
  long stride = numdec / numticks + 1;
  if (stride >= numdec) stride = std::max(1L, numdec - 1);
  const double eps = 1e-10;  // in decades: a decade at the very edge of the view counts
  const auto inside = [&](double v) {
    const double l = std::log10(v);
    return l >= lmin - eps && l <= lmax + eps;
  };
  const auto first = static_cast<long>(std::floor(lmin)) - stride;
  const auto last = static_cast<long>(std::ceil(lmax)) + 2 * stride;
  for (long d = first; d < last; d += stride) {
    const double v = std::pow(10.0, static_cast<double>(d));
    if (inside(v)) major.push_back(v);
    // The minor locator puts 2..9 x 10^d in every decade, only when the major stride is 1 and
    // the view spans at most 10 decades (else there would be too many marks to read).
    if (stride == 1 && numdec <= 10) {
      for (int sub = 2; sub <= 9; ++sub) {
        if (inside(sub * v)) minor.push_back(sub * v);
      }
    }
  }
}

}  // namespace attnpool::render::detail
