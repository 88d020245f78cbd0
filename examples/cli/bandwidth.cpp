// Silverman's rule of thumb; see bandwidth.hpp for the formula and its caveats.
#include "bandwidth.hpp"

#include <attnpool/error.hpp>

#include <cmath>

namespace attnpool::cli {

bandwidth_choice silverman_bandwidth(const numeric_table& x, std::string_view source) {
  bandwidth_choice c;
  c.n = x.rows;
  c.d = x.cols();
  if (c.n < 2) {
    throw input_error(detail::concat(source,
                                     ": --bandwidth silverman needs at least 2 training points, got ",
                                     c.n, "; pass --bandwidth H"));
  }
  const auto n = static_cast<double>(c.n);
  double sigma_sum = 0;
  for (std::size_t j = 0; j < c.d; ++j) {
    // Two passes in double: the mean, then the squared deviations (no cancellation).
    double mean = 0;
    for (std::size_t i = 0; i < c.n; ++i) mean += static_cast<double>(x.at(i, j));
    mean /= n;
    double ss = 0;
    for (std::size_t i = 0; i < c.n; ++i) {
      const double dev = static_cast<double>(x.at(i, j)) - mean;
      ss += dev * dev;
    }
    sigma_sum += std::sqrt(ss / (n - 1));
  }
  c.sigma = sigma_sum / static_cast<double>(c.d);
  const auto d = static_cast<double>(c.d);
  c.h = c.sigma * std::pow(4.0 / ((d + 2.0) * n), 1.0 / (d + 4.0));
  if (c.sigma == 0) {
    throw input_error(detail::concat(
        source,
        ": --bandwidth silverman: every training point is equal (no spread), so Silverman's "
        "rule gives h = 0; pass --bandwidth H"));
  }
  if (!(c.h > 0) || !std::isfinite(c.h)) {
    throw input_error(detail::concat(source, ": --bandwidth silverman: Silverman's rule gives h = ", c.h,
                                     " (sigma = ", c.sigma, "); pass --bandwidth H"));
  }
  return c;
}

}  // namespace attnpool::cli
