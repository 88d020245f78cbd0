// Leave-one-out cross-validation in fp64: the oracle of the CPU and GPU sweeps.
#include <attnpool/learn.hpp>
#include <attnpool/reference.hpp>

#include "src/reference/engine.hpp"

namespace attnpool {

// The fp64 oracle: reference::pool with the leave-one-out mask, once per bandwidth.
std::vector<double> detail::reference_loo_cv(const_view x, const_view y, std::span<const double> hs) {
  std::vector<double> cv;
  cv.reserve(hs.size());
  for (double h : hs) {
    pool_params params{h};
    params.mask = mask::leave_one_out;
    const auto r = reference::pool(x, x, y, params);
    double err = 0.0;
    for (std::size_t i = 0; i < r.n; ++i)
      for (std::size_t c = 0; c < r.dv; ++c) {
        const double e = static_cast<double>(y(i, c)) - r.out[i * r.dv + c];
        err += e * e;
      }
    cv.push_back(err / (static_cast<double>(r.n) * static_cast<double>(r.dv)));
  }
  return cv;
}

}  // namespace attnpool
