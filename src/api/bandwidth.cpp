// Bandwidth selection by leave-one-out cross-validation: loo_cv_error evaluates many bandwidths
// in one call on the chosen backend's sweep (src/cpu/bandwidth.cpp, the GPU's
// kernels/loo_sweep/), select_bandwidth searches a log grid and refines it by golden section on
// ln h, written once (grid_then_golden) over a pluggable evaluator: the CPU / reference
// loo_cv_error, or one device session that holds x and y for the whole search. Per dimension it
// continues with train_parametric's quasi-Newton search (src/api/train.hpp) from that h.
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/api/guarded_output.hpp"
#include "src/api/train.hpp"
#include "src/cpu/engine.hpp"
#include "src/cuda/backends.hpp"
#include "src/reference/engine.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace attnpool {
namespace {

// The most grid bandwidths select_bandwidth evaluates (each is a full leave-one-out sweep).
constexpr std::size_t kMaxGridSize = std::size_t{1} << 24;

// The views x and y, before anything reads them: leading dimensions, non-null data, n >= 2 rows
// each, and at least one column each.
void check_data_views(const char* fn, const_view x, const_view y) {
  detail::check_view(fn, "x", x);
  detail::check_view(fn, "y", y);
  ATTNPOOL_EXPECTS(x.rows >= 2, fn, ": x.rows (n) must be >= 2 for leave-one-out, got ", x.rows);
  ATTNPOOL_EXPECTS(y.rows == x.rows, fn, ": y.rows must equal x.rows (n = ", x.rows, "), got ",
                   y.rows);
  ATTNPOOL_EXPECTS(x.cols >= 1 && y.cols >= 1, fn, ": x and y need >= 1 column, got ", x.cols,
                   " and ", y.cols);
}

// Shapes, bandwidths and data of a loo_cv_error call.
void check_cv_args(const char* fn, const_view x, const_view y, std::span<const double> hs,
                   const options& opts) {
  check_data_views(fn, x, y);
  ATTNPOOL_EXPECTS(!hs.empty(), fn, ": bandwidths is empty");
  const float shape_only = 0.0f;
  for (double h : hs) {
    pool_params params{h};
    params.mask = mask::leave_one_out;
    detail::check_pool_args(fn, x, x, y, const_view{&shape_only, x.rows, y.cols, y.cols}, params,
                            detail::mask_support::host);
  }
  if (!opts.check_finite) return;
  detail::check_finite_host(fn, "x", x);
  detail::check_finite_host(fn, "y", y);
  // Squared distances must be finite floats: |x| <= sqrt(FLT_MAX / (8 d)) with a factor 2 spare.
  // (Scores may overflow to -inf: their weight is then 0, which is what they are.)
  const double limit =
      std::sqrt(static_cast<double>(std::numeric_limits<float>::max()) / (8.0 * static_cast<double>(x.cols)));
  for (std::size_t i = 0; i < x.rows; ++i)
    for (std::size_t c = 0; c < x.cols; ++c)
      ATTNPOOL_EXPECTS(std::fabs(x(i, c)) <= limit, fn, ": x(", i, ", ", c, ") = ", x(i, c),
                       " overflows float32 squared distances (|x| <= ", limit,
                       "); centre or rescale the inputs");
}

// cv(h) for a set of bandwidths (validated by the caller).
using cv_evaluator = std::function<std::vector<double>(std::span<const double>)>;

// The search of select_bandwidth, for any evaluator: the log grid over [h_min, h_max] in one
// call, then golden section on ln h between the best grid point's neighbours, one bandwidth
// per call. The returned point is the best evaluated one, so refinement never makes the answer
// worse than the grid's, and every evaluated h lies in [h_min, h_max]: h > 0 always.
bandwidth_selection grid_then_golden(const bandwidth_search& search, double h_min, double h_max,
                                     const cv_evaluator& eval) {
  bandwidth_selection r;
  const std::size_t g = search.grid_size;
  const double u0 = std::log(h_min), step = (std::log(h_max) - u0) / static_cast<double>(g - 1);
  r.grid.resize(g);
  for (std::size_t k = 0; k < g; ++k) r.grid[k] = std::exp(u0 + step * static_cast<double>(k));
  r.grid.front() = h_min;  // exactly the ends asked for
  r.grid.back() = h_max;
  r.cv = eval(r.grid);
  r.evaluations = g;

  // Best grid point; ties go to the larger bandwidth.
  std::size_t best = g - 1;
  for (std::size_t k = g - 1; k-- > 0;)
    if (r.cv[k] < r.cv[best]) best = k;
  r.bandwidth = r.grid[best];
  r.cv_error = r.cv[best];
  r.at_boundary = best == 0 || best == g - 1;
  if (!search.refine) return r;

  auto f = [&](double u) {
    const double h = std::exp(u);
    const double e = eval(std::span<const double>(&h, 1))[0];
    ++r.evaluations;
    if (e < r.cv_error) {
      r.cv_error = e;
      r.bandwidth = h;
    }
    return e;
  };
  const double inv_phi = (std::sqrt(5.0) - 1.0) / 2.0;
  double lo = std::log(r.grid[best == 0 ? 0 : best - 1]);
  double hi = std::log(r.grid[best == g - 1 ? g - 1 : best + 1]);
  double a = hi - inv_phi * (hi - lo), b = lo + inv_phi * (hi - lo);
  double fa = f(a), fb = f(b);
  while (hi - lo > search.log_tolerance) {
    if (fa <= fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - inv_phi * (hi - lo);
      fa = f(a);
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + inv_phi * (hi - lo);
      fb = f(b);
    }
  }
  return r;
}

}  // namespace

std::vector<double> loo_cv_error(const_view x, const_view y, std::span<const double> bandwidths,
                                 const options& opts) {
  constexpr const char* fn = "loo_cv_error";
  const backend b = detail::choose_backend({fn, detail::entry_point::bandwidth, opts.backend});
  check_cv_args(fn, x, y, bandwidths, opts);
  const detail::scaled_targets ys(y, x.rows);
  std::vector<double> cv;
  switch (b) {
    case backend::reference: cv = detail::reference_loo_cv(x, ys.view(), bandwidths); break;
    case backend::cuda_fused: cv = detail::cuda_loo_cv(x, ys.view())(bandwidths); break;
    default: cv = detail::cpu_loo_cv(x, ys.view(), bandwidths, opts.threads); break;
  }
  for (double& e : cv) e = ys.unscale_loss(e);
  return cv;
}

bandwidth_selection select_bandwidth(const_view x, const_view y, const bandwidth_search& search,
                                     const options& opts) {
  constexpr const char* fn = "select_bandwidth";
  const backend which = detail::choose_backend({fn, detail::entry_point::bandwidth, opts.backend});
  ATTNPOOL_EXPECTS(search.grid_size >= 3 && search.grid_size <= kMaxGridSize, fn,
                   ": search.grid_size must be in [3, 2^24], got ", search.grid_size);
  ATTNPOOL_EXPECTS(std::isfinite(search.log_tolerance) && search.log_tolerance > 0.0, fn,
                   ": search.log_tolerance must be finite and > 0, got ", search.log_tolerance);
  for (double h : {search.h_min, search.h_max})
    ATTNPOOL_EXPECTS(std::isfinite(h) && h >= 0.0, fn,
                     ": search.h_min and h_max must be finite and >= 0 (0 = from the data), got ",
                     h);
  // Every view is checked before the data's scale below reads x.
  check_data_views(fn, x, y);
  // The data's scale: the largest coordinate range (in double; 1 when every x is equal).
  double spread = 0.0;
  for (std::size_t c = 0; c < x.cols; ++c) {
    double lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = 0; i < x.rows; ++i) {
      lo = std::min(lo, static_cast<double>(x(i, c)));
      hi = std::max(hi, static_cast<double>(x(i, c)));
    }
    if (hi - lo > spread) spread = hi - lo;
  }
  if (!(spread > 0.0) || !std::isfinite(spread)) spread = 1.0;
  const double h_min = search.h_min > 0.0 ? search.h_min : spread * 1e-3;
  const double h_max = search.h_max > 0.0 ? search.h_max : spread * 10.0;
  ATTNPOOL_EXPECTS(h_min < h_max, fn, ": the grid needs h_min < h_max, got ", h_min, " and ",
                   h_max);

  // The grid's first call validates the data (check_finite) and the range of bandwidths; the
  // refinement stays inside that range, so its calls skip the data checks.
  options checked = opts;
  checked.backend = which;
  options unchecked = checked;
  unchecked.check_finite = false;
  bool first = true;
  std::optional<detail::cuda_loo_cv> gpu;  // the device session: x and y uploaded once
  // Targets near float32's range go through loo_cv_error, which scales them, one call a time.
  const detail::scaled_targets ys(y, x.rows);
  const cv_evaluator eval = [&](std::span<const double> hs) {
    const options& o = first ? checked : unchecked;
    first = false;
    if (which != backend::cuda_fused || ys.shift() != 0) return loo_cv_error(x, y, hs, o);
    check_cv_args("loo_cv_error", x, y, hs, o);
    if (!gpu) gpu.emplace(x, y);
    return (*gpu)(hs);
  };
  bandwidth_selection r = grid_then_golden(search, h_min, h_max, eval);
  r.isotropic_cv_error = r.cv_error;
  r.bandwidths.assign(x.cols, r.bandwidth);
  if (!search.per_dimension || x.cols == 1) return r;

  // Per dimension: the quasi-Newton search over w_c = 1 / h_c, each h_c inside its column's
  // range (learn.hpp), on the same backend, from two starts: the isotropic optimum, and h_c
  // proportional to the column's range at the best common scale. The second matters where the
  // columns' scales differ widely: the isotropic h then fits the widest column, the narrow ones
  // sit on a plateau (h_c far above their range, where the loss hardly depends on h_c), and a
  // descent from there stops at once.
  const backend learn = detail::choose_backend({fn, detail::entry_point::learning, which, x.cols});
  detail::loo_search per_dim;
  per_dim.max_epochs = search.max_iterations;
  per_dim.w_lo.resize(x.cols);
  per_dim.w_hi.resize(x.cols);
  std::vector<double> by_range(x.cols);
  for (std::size_t c = 0; c < x.cols; ++c) {
    double lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = 0; i < x.rows; ++i) {
      lo = std::min(lo, static_cast<double>(x(i, c)));
      hi = std::max(hi, static_cast<double>(x(i, c)));
    }
    const double range = hi - lo > 0.0 && std::isfinite(hi - lo) ? hi - lo : spread;
    const double h_lo = search.h_min > 0.0 ? search.h_min : range * 1e-3;
    const double h_hi = search.h_max > 0.0 ? search.h_max : range * 10.0;
    per_dim.w_lo[c] = 1.0 / h_hi;
    per_dim.w_hi[c] = 1.0 / h_lo;
    by_range[c] = std::clamp(r.bandwidth * (range / spread), h_lo, h_hi);
  }
  options run = unchecked;
  run.backend = learn;
  const auto descend = [&](const std::vector<double>& w0, bool scan_first, bool restarts) {
    parametric_fit fit;
    fit.w.resize(x.cols);
    for (std::size_t c = 0; c < x.cols; ++c)
      fit.w[c] = std::clamp(w0[c], per_dim.w_lo[c], per_dim.w_hi[c]);
    detail::loo_search s = per_dim;
    s.scan_first = scan_first;
    s.restarts = restarts;
    detail::minimise_loo(x, ys.view(), s, run, fit);
    fit.final_loss = ys.unscale_loss(fit.final_loss);
    r.evaluations += fit.evaluations;
    return fit;
  };
  const auto inverse = [](std::vector<double> h) {
    for (double& hc : h) hc = 1.0 / hc;
    return h;
  };
  // The isotropic start needs no scale scan: the isotropic search found its best scale.
  parametric_fit fit = descend(inverse(r.bandwidths), false, false);
  if (by_range != r.bandwidths) {
    parametric_fit other = descend(inverse(by_range), true, false);
    if (other.final_loss < fit.final_loss) fit = std::move(other);
  }
  // The restarts, once, from the lower of the two end points (it has had its scale scan).
  fit = descend(fit.w, false, true);
  r.per_dimension_stop = fit.stop;
  // The isotropic start was evaluated by the sweep, the search by pool(): keep the start unless
  // the search is lower (they agree to float32 rounding where it did not move).
  if (fit.final_loss < r.isotropic_cv_error) {
    for (std::size_t c = 0; c < x.cols; ++c) r.bandwidths[c] = 1.0 / fit.w[c];
    r.cv_error = fit.final_loss;
  }
  return r;
}

}  // namespace attnpool
