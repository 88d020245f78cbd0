// The leave-one-out sweep of loo_cv_error on the CPU engine: many bandwidths in one fused pass
// over the keys.
//
// Per query row i (x_i against every x_j, j != i):
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
// backend::cuda_fused runs the same sweep on the GPU (kernels/loo_sweep/).
#include <attnpool/detail/fast_math.hpp>
#include <attnpool/detail/online_softmax.hpp>
#include <attnpool/detail/scores.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>

#include "src/cpu/engine.hpp"
#include "src/cpu/tiles.hpp"
#include "src/validate/validate.hpp"

#include <cmath>
#include <limits>

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

}  // namespace

// The CPU sweep: cv for every bandwidth (validated by the caller).
std::vector<double> detail::cpu_loo_cv(const_view x, const_view y, std::span<const double> hs,
                                       unsigned threads) {
  const std::size_t n = x.rows, d = x.cols, dv = y.cols, nb = hs.size();
  const std::vector<float> xt = detail::pack_columns(x);
  const std::vector<float> yt = detail::pack_columns(y);
  std::vector<float> neg_c(nb);
  for (std::size_t b = 0; b < nb; ++b)
    neg_c[b] = static_cast<float>(-detail::gaussian_log2_scale(hs[b]));
  const std::size_t blocks = (n + kBlockRows - 1) / kBlockRows;
  std::vector<double> partial(blocks * nb, 0.0);
  // Scratch: the row's distances, one tile of weights, per bandwidth the sum and dv dots, and a
  // tile's dv dots.
  const std::size_t scratch = n + kCpuTile + nb * (1 + dv) + dv;
  const bool wide = detail::cpu_wide_tiles();
  detail::parallel_rows(blocks, kBlockRows * n * (d + nb), threads, scratch,
                        [&](std::size_t blk, float* buf) {
    float* r = buf;
    float* p = r + n;
    float* sum = p + kCpuTile;
    float* acc = sum + nb;
    float* dots = acc + nb * dv;
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
          } else {  // the dv dots in one pass over the weights (as dot_tile sums each)
            sum[b] += exp_only(r + j0, p, len, neg_c[b]);
            const float* pw = p;
            detail::dot_tile_rows(&pw, 1, yt.data() + j0, n, len, dv, wide, dots);
            for (std::size_t c = 0; c < dv; ++c) acc[b * dv + c] += dots[c];
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

}  // namespace attnpool
