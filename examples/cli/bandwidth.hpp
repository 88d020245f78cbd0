/// \file
/// `--bandwidth silverman`: the rule-of-thumb bandwidth (`auto` is leave-one-out selection, fit.cpp).
#pragma once

#include "table.hpp"

#include <cstddef>

namespace attnpool::cli {

/// The bandwidth chosen by silverman_bandwidth and the numbers it came from.
struct bandwidth_choice {
  double h = 0;      ///< the bandwidth
  double sigma = 0;  ///< mean of the per-dimension sample standard deviations
  std::size_t n = 0;
  std::size_t d = 0;
};

/// Silverman's rule of thumb for a Gaussian kernel, in its multivariate form (Silverman 1986,
/// eq. 4.14, with one common sigma):
///
///   h = sigma * (4 / ((d + 2) n))^(1 / (d + 4)),
///
/// sigma = the mean over the d columns of `x` of their sample standard deviations (n - 1 in the
/// denominator), computed in double. For d = 1 this is the familiar 1.06 sigma n^(-1/5). The
/// rule is optimal for Gaussian-distributed inputs; for multimodal or very skewed inputs it
/// oversmooths; `--bandwidth auto` (leave-one-out cross-validation) does not assume a shape.
/// \throws input_error when sigma is 0 (n == 1, or every point equal), naming `source`.
bandwidth_choice silverman_bandwidth(const numeric_table& x, std::string_view source);

}  // namespace attnpool::cli
