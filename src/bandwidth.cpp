// Bandwidth selection by leave-one-out cross-validation (issue 6): loo_cv_error evaluates many
// bandwidths in one fused sweep over the keys, select_bandwidth searches a log grid and refines
// it by golden section on ln h.
//
// The fused sweep, per query row i (x_i against every x_j, j != i):
//   1. r_j = ||x_i - x_j||^2 for the whole row into a row buffer (n floats per thread, L2-sized
//      for n ~ 1e5), r_i = +inf (the leave-one-out mask), and r_min = min_j r_j.
//   2. t_j = r_j - r_min >= 0 in place. Every Gaussian score is -c_h r_j with c_h > 0, so the
//      row's largest score is the nearest key's for *every* bandwidth: 2^(-c_h t_j) <= 1 is the
//      max-subtracted softmax numerator, the nearest key gets exactly 2^0, and no bandwidth needs
//      an online rescale. Subtracting r_min is a shift common to the row, so its rounding cancels;
//      what is left per score is the rounding of r_j, of t_j and of c_h * t_j, within the
//      (d + 4) eps |s_j| that reference::float32_score_error allows the forward engine.
//   3. For each tile of kCpuTile keys (in L1) and each bandwidth: sum_j 2^(-c_h t_j) and
//      sum_j 2^(-c_h t_j) y_j, the same exp2_poly the forward engine runs.
// The distances are computed once per pair and shared by all bandwidths; each bandwidth costs
// one exp2 and two adds per pair.
//
// backend::cuda_fused runs the same sweep on the GPU (kernels/bandwidth_sweep.cu, glue in
// src/cuda/bandwidth_cuda.cpp), and select_bandwidth's search is written once
// (grid_then_golden) over a pluggable evaluator: the CPU / reference loo_cv_error, or one
// device session that holds x and y for the whole search.
#include <attnpool/cuda.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/reference.hpp>

#include "backends.hpp"
#include "cpu_common.hpp"
#include "validate.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <optional>

namespace attnpool {
namespace {

using detail::kCpuTile;

// Rows per unit of parallel work: each block accumulates its own per-bandwidth error sums, then
// the blocks are added in order, so the result does not depend on the thread count.
constexpr std::size_t kBlockRows = 16;

// r[j] -= min_j r[j], returning that minimum (+inf entries stay +inf).
ATTNPOOL_MULTIVERSION
float subtract_min(float* r, std::size_t n) {
  float mn = std::numeric_limits<float>::infinity();
#pragma omp simd reduction(min : mn)
  for (std::size_t j = 0; j < n; ++j) mn = std::min(mn, r[j]);
#pragma omp simd
  for (std::size_t j = 0; j < n; ++j) r[j] = r[j] - mn;
  return mn;
}

struct sums {
  float sum, dot;
};

// sum_j 2^(neg_c t_j) and sum_j 2^(neg_c t_j) y_j over one tile. t_j = +inf (the masked key)
// gives 2^-inf = 0; neg_c is finite, so no 0 * inf arises.
ATTNPOOL_MULTIVERSION
sums exp_dot(const float* t, const float* y, std::size_t len, float neg_c) {
  float sum = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+ : sum, dot)
  for (std::size_t j = 0; j < len; ++j) {
    const float p = detail::exp2_poly(neg_c * t[j]);
    sum += p;
    dot = p * y[j] + dot;
  }
  return {sum, dot};
}

// p_j = 2^(neg_c t_j) into p; returns their sum (dv > 1: the dots follow per column).
ATTNPOOL_MULTIVERSION
float exp_only(const float* t, float* p, std::size_t len, float neg_c) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (std::size_t j = 0; j < len; ++j) {
    p[j] = detail::exp2_poly(neg_c * t[j]);
    sum += p[j];
  }
  return sum;
}


// The CPU sweep: cv for every bandwidth (validated by the caller).
std::vector<double> cpu_loo_cv(const_view x, const_view y, std::span<const double> hs,
                               unsigned threads) {
  const std::size_t n = x.rows, d = x.cols, dv = y.cols, nb = hs.size();
  const std::vector<float> xt = detail::pack_columns(x);
  const std::vector<float> yt = detail::pack_columns(y);
  std::vector<float> neg_c(nb);
  for (std::size_t b = 0; b < nb; ++b)
    neg_c[b] = static_cast<float>(-detail::gaussian_log2_scale(hs[b]));
  const std::size_t blocks = (n + kBlockRows - 1) / kBlockRows;
  std::vector<double> partial(blocks * nb, 0.0);
  // Scratch: the row's distances, one tile of weights, and per bandwidth the sum and dv dots.
  const std::size_t scratch = n + kCpuTile + nb * (1 + dv);
  detail::parallel_rows(blocks, kBlockRows * n * (d + nb), threads, scratch,
                        [&](std::size_t blk, float* buf) {
    float* r = buf;
    float* p = r + n;
    float* sum = p + kCpuTile;
    float* acc = sum + nb;
    double* err = partial.data() + blk * nb;
    const std::size_t end = std::min(n, (blk + 1) * kBlockRows);
    for (std::size_t i = blk * kBlockRows; i < end; ++i) {
      detail::dist_tile(x.row(i), xt.data(), n, d, 0, n, r);
      r[i] = std::numeric_limits<float>::infinity();  // leave one out
      subtract_min(r, n);
      std::fill(sum, sum + nb * (1 + dv), 0.0f);
      for (std::size_t j0 = 0; j0 < n; j0 += kCpuTile) {
        const std::size_t len = std::min(kCpuTile, n - j0);
        for (std::size_t b = 0; b < nb; ++b) {
          if (dv == 1) {
            const sums s = exp_dot(r + j0, yt.data() + j0, len, neg_c[b]);
            sum[b] += s.sum;
            acc[b] += s.dot;
          } else {
            sum[b] += exp_only(r + j0, p, len, neg_c[b]);
            for (std::size_t c = 0; c < dv; ++c)
              acc[b * dv + c] += detail::dot_tile(p, yt.data() + c * n + j0, len);
          }
        }
      }
      // sum >= 1: the nearest key contributes 2^0 for every bandwidth.
      for (std::size_t b = 0; b < nb; ++b) {
        const float inv = 1.0f / sum[b];
        for (std::size_t c = 0; c < dv; ++c) {
          const double e = static_cast<double>(y(i, c)) - static_cast<double>(acc[b * dv + c] * inv);
          err[b] += e * e;
        }
      }
    }
  });
  std::vector<double> cv(nb, 0.0);
  for (std::size_t blk = 0; blk < blocks; ++blk)
    for (std::size_t b = 0; b < nb; ++b) cv[b] += partial[blk * nb + b];
  const double count = static_cast<double>(n) * static_cast<double>(dv);
  for (double& c : cv) c /= count;
  return cv;
}

// The fp64 oracle: reference::pool with the leave-one-out mask, once per bandwidth.
std::vector<double> reference_loo_cv(const_view x, const_view y, std::span<const double> hs) {
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

// Shapes, bandwidths and data of a loo_cv_error call.
void check_cv_args(const char* fn, const_view x, const_view y, std::span<const double> hs,
                   const options& opts) {
  ATTNPOOL_EXPECTS(x.rows >= 2, fn, ": x.rows (n) must be >= 2 for leave-one-out, got ", x.rows);
  ATTNPOOL_EXPECTS(y.rows == x.rows, fn, ": y.rows must equal x.rows (n = ", x.rows, "), got ",
                   y.rows);
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

// The backend a cross-validation call runs on. The learning API's shared rule
// (resolve_learn_backend) except that the GPU sweep exists: cuda_fused runs it, automatic picks
// it where a device exists (else the CPU engine), and cuda_unfused, which would need the n x n
// weights for nothing, is refused naming the backend.
backend resolve_cv_backend(const char* fn, backend requested) {
  if (requested == backend::cuda_fused) return backend::cuda_fused;
  if (requested == backend::automatic)
    return cuda::device_count() > 0 ? backend::cuda_fused : backend::cpu;
  ATTNPOOL_EXPECTS(requested != backend::cuda_unfused, fn,
                   ": backend cuda_unfused has no leave-one-out sweep (it is fused by design); "
                   "use cuda_fused, automatic, cpu or reference");
  return detail::resolve_learn_backend(fn, requested);
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
  const backend b = resolve_cv_backend(fn, opts.backend);
  check_cv_args(fn, x, y, bandwidths, opts);
  switch (b) {
    case backend::reference: return reference_loo_cv(x, y, bandwidths);
    case backend::cuda_fused: return detail::cuda_loo_cv(x, y)(bandwidths);
    default: return cpu_loo_cv(x, y, bandwidths, opts.threads);
  }
}

bandwidth_selection select_bandwidth(const_view x, const_view y, const bandwidth_search& search,
                                     const options& opts) {
  constexpr const char* fn = "select_bandwidth";
  const backend which = resolve_cv_backend(fn, opts.backend);
  ATTNPOOL_EXPECTS(search.grid_size >= 3, fn, ": search.grid_size must be >= 3, got ",
                   search.grid_size);
  ATTNPOOL_EXPECTS(std::isfinite(search.log_tolerance) && search.log_tolerance > 0.0, fn,
                   ": search.log_tolerance must be finite and > 0, got ", search.log_tolerance);
  for (double h : {search.h_min, search.h_max})
    ATTNPOOL_EXPECTS(std::isfinite(h) && h >= 0.0, fn,
                     ": search.h_min and h_max must be finite and >= 0 (0 = from the data), got ",
                     h);
  ATTNPOOL_EXPECTS(x.rows >= 2, fn, ": x.rows (n) must be >= 2 for leave-one-out, got ", x.rows);
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
  const cv_evaluator eval = [&](std::span<const double> hs) {
    const options& o = first ? checked : unchecked;
    first = false;
    if (which != backend::cuda_fused) return loo_cv_error(x, y, hs, o);
    check_cv_args("loo_cv_error", x, y, hs, o);
    if (!gpu) gpu.emplace(x, y);
    return (*gpu)(hs);
  };
  return grid_then_golden(search, h_min, h_max, eval);
}

}  // namespace attnpool
