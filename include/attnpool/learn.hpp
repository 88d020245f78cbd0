/// \file
/// Learning with attention pooling: bandwidth selection by leave-one-out
/// cross-validation, the backward pass of pool(), and the book's parametric attention pooling
/// trained by gradient descent.
///
/// Every function here takes host memory, is synchronous and thread-safe, and runs on
/// backend::cpu (the fused float32 engine) or backend::reference (fp64 oracle loops).
/// pool_backward() and train_parametric() also run on backend::cuda_fused (the fused GPU
/// backward pass, kernels/backward*; d <= kMaxGpuBackwardDims), and there backend::automatic
/// means cuda_fused where a device exists and d <= kMaxGpuBackwardDims, else cpu;
/// backend::cuda_unfused throws invalid_argument. The device-pointer backward is
/// attnpool::cuda::pool_backward (cuda.hpp).
/// Bandwidth selection (loo_cv_error, select_bandwidth) also runs on backend::cuda_fused: the
/// leave-one-out sweep on the GPU (kernels/loo_sweep/sweep.cu), with x and y copied to the
/// device once per call; there backend::automatic means cuda_fused where a CUDA device exists,
/// else cpu, and backend::cuda_unfused throws invalid_argument (the sweep is fused by design).
#pragma once

#include <attnpool/types.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace attnpool {

// ---- backward pass ----------------------------------------------------------------------------

/// The largest input dimension d that pool_backward() takes on backend::cuda_fused; larger d
/// needs backend::cpu.
inline constexpr std::size_t kMaxGpuBackwardDims = 64;

/// Where pool_backward() writes the gradients of a scalar loss L. Each view is optional: leave
/// it default-constructed (data == nullptr) and that gradient is not computed (dq and dh share
/// one pass over the pairs, dk and dv another).
struct pool_gradients {
  mutable_view queries{};       ///< n x d: dL/dq
  mutable_view keys{};          ///< m x d: dL/dk
  mutable_view values{};        ///< m x dv: dL/dv
  double* bandwidth = nullptr;  ///< dL/dh (one double)
};

/// The backward pass of pool(): given dL/d(out), the gradients with respect to the queries, the
/// keys, the values and the bandwidth, under the same mask. With P the weights,
/// dp_ij = dout_i . v_j, D_i = dout_i . out_i and dS_ij = P_ij (dp_ij - D_i):
///   dq_i = -1/h^2 sum_j dS_ij (q_i - k_j)      dk_j = 1/h^2 sum_i dS_ij (q_i - k_j)
///   dv_j = sum_i P_ij dout_i                   dh   = 1/h^3 sum_ij dS_ij ||q_i - k_j||^2
/// backend::cpu is fused in the FlashAttention style and never stores the n x m matrix: a
/// forward pass keeps each row's log-sum-exp; one pass over the rows recomputes the scores tile
/// by tile for dq and dh, one pass over the keys does the same for dk and dv. Memory
/// O((n + m)(d + dv)). Results do not depend on the thread count. backend::cuda_fused runs the
/// same two phases as GPU kernels (cuda::pool_backward; the row phase also finds the
/// log-sum-exp in its single pass), each gradient summed in a fixed order, so its results are
/// bitwise repeatable too.
/// \param queries n x d, keys m x d, values m x dv: as for pool()
/// \param dout    n x dv: dL/d(out)
/// \param grads   where to write; any subset. No gradient may overlap an input or another
///                gradient.
/// \param params  bandwidth, kernel and mask, as for pool()
/// \param opts    backend (cpu, reference, cuda_fused; automatic = cuda_fused where a device
///                exists and d <= kMaxGpuBackwardDims, else cpu), threads, check_finite
/// Values and dout near float32's range are scaled by powers of two for the engine and the
/// gradients scaled back (exact), so a gradient is finite wherever its value is a float32.
/// \throws invalid_argument as pool() does, on a gradient view of the wrong shape or
///         overlapping buffers, for backend::cuda_unfused, or for d > kMaxGpuBackwardDims on cuda_fused; cuda_error on
///         cuda_fused without a usable device (or in a build without CUDA).
void pool_backward(const_view queries, const_view keys, const_view values, const_view dout,
                   const pool_gradients& grads, const pool_params& params = {},
                   const options& opts = {});

namespace reference {

/// The fp64 oracle of pool_backward(), from the formulas above with the n x m weights
/// materialised row by row, with per-element error scales for float32 engines:
///   *_scale: sum of |terms|, where a term's dS_ij is bounded by P_ij (|dp_ij| + |D_i|)
///            (the rounding of the sums and of dp_ij - D_i);
///   *_bound: first-order effect of float32 score errors E_ij = rel (|s_ij| + sum_l P_il |s_il|
///            + |lse_i| + 1) on every weight (its own score, and the row's log-sum-exp), and of
///            the forward output's error on D_i (rel = float32_score_error(d) unless given).
/// A float32 engine's gradient element g should satisfy |g - exact| <= rtol * scale + bound.
struct gradients {
  std::size_t n = 0, m = 0, d = 0, value_cols = 0;  ///< shapes: dv is m x value_cols
  std::vector<double> dq, dk, dv;                    ///< n x d, m x d, m x dv, row-major
  double dh = 0.0;
  std::vector<double> dq_scale, dk_scale, dv_scale;  ///< as dq, dk, dv
  double dh_scale = 0.0;
  std::vector<double> dq_bound, dk_bound, dv_bound;  ///< as dq, dk, dv
  double dh_bound = 0.0;
};

/// The oracle for pool_backward(). Throws invalid_argument as attnpool::pool does.
gradients pool_backward(const_view queries, const_view keys, const_view values, const_view dout,
                        const pool_params& params, double score_rel_error = -1.0);

}  // namespace reference

// ---- parametric attention pooling ------------------------------------------------------------

/// How train_parametric() optimises.
enum class train_method {
  /// BFGS on u = ln w (so every w stays > 0) with a backtracking (Armijo) line search, on the
  /// *mean* leave-one-out loss; steps are capped at 2 in ln w, and a step counts only if it
  /// lowers the loss by more than 1e-6 of it (float32 noise never drives the search). At the
  /// start and wherever the descent stops, a scale scan multiplies every w by the best of 64
  /// log-spaced common factors (one fused loo_cv_error sweep over the scaled inputs, with
  /// bandwidths 1e-3 to 10 times their range, select_bandwidth's default grid) if that is lower:
  /// a start on a plateau (w so large that every prediction is the nearest other point's y, or
  /// so small that every prediction is the mean) or in a local minimum's basin still reaches the
  /// lowest minimum along the scale. With per_dimension the start is isotropic, and where the
  /// descent stops a dimension scan also sets each w_c in turn so low that its input no longer
  /// matters (its weighted spread 1e-3), taking the lowest clear improvement: an irrelevant
  /// input is switched off even where a local minimum lies between it and the isotropic start.
  /// Then restarts: from each point of the slices through the stopping point (one w_c times
  /// e^{+-0.5} or e^{+-1}, 4 d points) a descent, lowest first, each stopped once it comes back
  /// within 0.1 in ln w of a minimum already found; one that ends lower by more than 1e-4 of
  /// the loss becomes the point whose slices are tried next (at most 10 rounds). They leave a
  /// local minimum whose basin no single weight's move leaves (the others must follow).
  quasi_newton,
  /// The book's procedure: plain full-batch gradient descent on w itself, on the *summed*
  /// leave-one-out loss, with a fixed learning_rate for exactly `max_epochs` steps. On the book's
  /// data (100 points, lr 0.5, 5 epochs) its first step jumps to w ~ 1e3 (h ~ 1e-3), where
  /// every prediction is the nearest other point's y and the gradient is ~0, and it stays there:
  /// a loss ~2x the leave-one-out minimum. Kept to reproduce the book (train_options::book()).
  book_sgd,
};

/// Why train_parametric() stopped.
enum class train_stop {
  /// quasi_newton: max_c |dL/d ln w_c| <= tolerance * L (or the quasi-Newton step is below
  /// 1e-4 in ln w), and the scale (and dimension) scans found nothing lower.
  converged,
  /// quasi_newton: the line search could not lower the loss by more than float32 noise along a
  /// descent direction, and the scale (and dimension) scans found nothing lower.
  no_progress,
  /// max_epochs ran out (book_sgd always stops so).
  max_epochs,
};

/// Settings of train_parametric(). The defaults converge (train_method::quasi_newton);
/// train_options::book() is the book's run.
struct train_options {
  train_method method = train_method::quasi_newton;
  /// quasi_newton: at most this many iterations (each a line search, or a scale scan) per
  /// descent (per_dimension's restarts are descents too); book_sgd: exactly this many gradient
  /// steps.
  std::size_t max_epochs = 100;
  /// quasi_newton: the relative gradient tolerance (finite, > 0): stop when
  /// max_c |dL/d ln w_c| <= tolerance * L.
  double tolerance = 1e-4;
  /// book_sgd only: the gradient-descent step size (finite, > 0).
  double learning_rate = 0.5;
  /// One weight per input dimension (an anisotropic bandwidth h_c = 1 / w_c) instead of one.
  bool per_dimension = false;
  /// Seeds the initial weights, drawn uniformly from [0, 1) as the book's torch.rand((1,))
  /// (quasi_newton: one draw from (0, 1] for every dimension, since it needs w > 0; its scale
  /// scan then makes the result all but independent of it).
  std::uint64_t seed = 0;
  /// Starting weights instead of random ones: empty, or 1 value (or d with per_dimension); each
  /// finite, and > 0 for quasi_newton.
  std::vector<double> initial_w{};

  /// The book's run: book_sgd, learning_rate 0.5, 5 epochs, w ~ U[0, 1).
  static train_options book() {
    train_options t;
    t.method = train_method::book_sgd;
    t.max_epochs = 5;
    t.learning_rate = 0.5;
    return t;
  }
};

/// What train_parametric() returns.
struct parametric_fit {
  std::vector<double> w;     ///< the trained weights: 1, or d with per_dimension
  /// The loss at the start of each iteration (the book prints it per epoch): the mean
  /// leave-one-out squared error for quasi_newton (equal to loo_cv_error at h = 1 / w), the
  /// summed one for book_sgd. With per_dimension, the iterations of each restart that led to
  /// the returned w follow, from the restart's start (above the loss before it).
  std::vector<double> loss;
  double final_loss = 0.0;   ///< the loss at the returned w, in the same units
  std::vector<double> gradient;  ///< dL/dw at the returned w (as w)
  train_stop stop = train_stop::max_epochs;  ///< why it stopped
  /// Loss evaluations: pool() calls (with a gradient or without; the restarts' included) plus
  /// the bandwidths of each scale scan's sweep.
  std::size_t evaluations = 0;
};

/// The book's parametric attention pooling, score = -((q - k) * w)^2 / 2 with learned w,
/// trained on the leave-one-out squared error
///   L(w) = sum_i sum_c (y_ic - yhat_ic)^2,  yhat_i = sum_{j != i} softmax_j(score(x_i, x_j)) y_j
/// (divided by n dv for quasi_newton: the mean, so tolerances do not scale with n). A scalar w
/// is the Gaussian kernel with bandwidth h = 1 / |w|, so quasi_newton's minimum is
/// select_bandwidth()'s h. Each evaluation runs pool() (and pool_backward() for a gradient) on
/// the scaled inputs x * w with bandwidth 1 and mask::leave_one_out, and takes
/// dL/dw_c = sum_i (dq_ic + dk_ic) x_ic. Deterministic for a seed (the engines' results do not
/// depend on the thread count).
/// \param x n x d training inputs, n >= 2
/// \param y n x dv training targets
/// Backends as pool_backward(): cpu, reference or cuda_fused (every pool() and pool_backward()
/// of the run on the GPU; automatic = cuda_fused where a device exists and d <= 64, else cpu).
/// \throws invalid_argument on a bad view or shape (checked before any memory is read), a bad
///         setting (learning_rate or tolerance <= 0 or not finite, initial_w of the wrong size,
///         not finite, or <= 0 for quasi_newton), non-finite data, weights that overflow float32
///         scores during book_sgd training, or backend::cuda_unfused; cuda_error on cuda_fused
///         without a usable device.
parametric_fit train_parametric(const_view x, const_view y, const train_options& train = {},
                                const options& opts = {});

/// "quasi_newton", "book_sgd"; "converged", "no_progress", "max_epochs".
const char* to_string(train_method m) noexcept;
const char* to_string(train_stop s) noexcept;

// ---- bandwidth selection --------------------------------------------------------------------

/// Leave-one-out cross-validation error of Nadaraya-Watson regression of y on x, one value per
/// bandwidth:
///   cv(h) = 1 / (n dv) * sum_i sum_c (y_ic - yhat_ic(h))^2,
///   yhat_i(h) = pool(x_i; keys x, values y, bandwidth h, mask::leave_one_out).
/// backend::cpu evaluates every bandwidth in one fused sweep over the keys: the squared distances
/// of a tile are computed once and shared, and each bandwidth keeps its own softmax sums. (All
/// bandwidths share the row's nearest key as the softmax maximum, so no rescaling is needed.)
/// backend::cuda_fused runs the same sweep on the GPU: each squared distance is computed once
/// and shared by several bandwidths, and the per-row errors are summed per bandwidth in a fixed
/// order, so the result is bitwise reproducible. It agrees with backend::cpu within float32
/// rounding. Any d >= 1 and dv >= 1.
/// \param x          n x d inputs (queries and keys at once), n >= 2
/// \param y          n x dv targets
/// \param bandwidths each finite and > 0, small enough that log2(e)/(2h^2) fits a float
/// \param opts       backend (cpu, reference, cuda_fused, automatic = cuda_fused where a CUDA
///                   device exists, else cpu), threads (cpu), check_finite (checked on the host
///                   data for every backend)
/// \throws invalid_argument on a bad shape, bandwidth, non-finite input (check_finite), or
///         backend::cuda_unfused; cuda_error for cuda_fused without a device, in a build
///         without CUDA, or on a CUDA failure (out of device memory: x, y and 8 n bytes per
///         bandwidth, in batches of at most 256 MiB).
std::vector<double> loo_cv_error(const_view x, const_view y, std::span<const double> bandwidths,
                                 const options& opts = {});

/// How select_bandwidth() searches.
struct bandwidth_search {
  /// Log-spaced bandwidths evaluated in the first, fused sweep (3 to 2^24).
  std::size_t grid_size = 64;
  /// Grid ends. 0 = from the data: s * 1e-3 and s * 10, where s is the largest coordinate range
  /// of x (s = 1 when every x is equal: then every bandwidth gives the same error).
  double h_min = 0.0;
  double h_max = 0.0;
  /// Refine the best grid point by golden-section search on ln h within its two neighbours.
  bool refine = true;
  /// The refinement stops once the bracket is this narrow in ln h (> 0).
  double log_tolerance = 1e-3;
  /// One bandwidth per input dimension (statsmodels' and R np's cv_ls for continuous data):
  /// after the isotropic search, minimise the same leave-one-out error over ln h_c by the
  /// quasi-Newton method of train_parametric (gradients from the backward pass, so it scales with
  /// d), from two starts, keeping the lower: the best isotropic h, and h_c proportional to each
  /// column's range at the best common scale (which finds the narrow columns' scale where the
  /// columns' ranges differ widely); then its restarts (train_method::quasi_newton) from there,
  /// which reach a lower minimum where the descent stops in another basin (about 1 draw in 100
  /// of the tests' 2-D and 3-D data, 1-13 % above the optimum without them; about 4 d extra
  /// descents a round, most stopped within a few steps). Each h_c stays in [h_min, h_max], whose
  /// defaults are then per dimension: 1e-3 and 10 times that column's range (the largest range
  /// where a column is constant). An h_c at its upper end means the dimension hardly matters.
  bool per_dimension = false;
  /// per_dimension: at most this many quasi-Newton iterations per descent.
  std::size_t max_iterations = 100;
};

/// What select_bandwidth() found.
struct bandwidth_selection {
  /// The chosen isotropic h (with per_dimension: the best isotropic h, where the per-dimension
  /// search started); always finite and > 0.
  double bandwidth = 0.0;
  /// The chosen bandwidth per input dimension, d values, each finite and > 0: the per-dimension
  /// result, or d copies of `bandwidth`. Pass it as pool_params::bandwidths.
  std::vector<double> bandwidths;
  /// The leave-one-out CV error at `bandwidths` (at `bandwidth` without per_dimension).
  double cv_error = 0.0;
  double isotropic_cv_error = 0.0;  ///< loo_cv_error at `bandwidth`
  std::vector<double> grid;     ///< the grid bandwidths, ascending
  std::vector<double> cv;       ///< loo_cv_error at each grid bandwidth
  /// Bandwidths evaluated: grid_size + refinement steps (+ the per-dimension search's loss
  /// evaluations).
  std::size_t evaluations = 0;
  /// per_dimension: why the descent that reached `bandwidths` stopped (train_stop::converged
  /// otherwise).
  train_stop per_dimension_stop = train_stop::converged;
  /// The best grid point was an end of the grid: the true minimum may lie beyond it (widen
  /// h_min / h_max). `bandwidth` is then that end, refined only towards the inside.
  bool at_boundary = false;
};

/// Chooses the bandwidth h that minimises the leave-one-out squared error of Nadaraya-Watson
/// regression of y on x (what statsmodels' KernelReg calls cv_ls): a log-spaced grid in one fused
/// sweep (loo_cv_error), then golden-section refinement on ln h between the best grid point's
/// neighbours. Never returns h <= 0: the search stays inside [h_min, h_max]. Ties go to the
/// larger bandwidth (the smoother fit). The search is the same on every backend; on
/// backend::cuda_fused x and y are copied to the device once and every evaluation (the grid,
/// then each refinement step) runs there, so the chosen h agrees with backend::cpu's within the
/// refinement tolerance (unless two minima of the CV curve are within float32 rounding).
/// \param x n x d inputs, n >= 2
/// \param y n x dv targets
/// \param opts as for loo_cv_error (automatic = cuda_fused where a CUDA device exists)
/// With search.per_dimension and d > 1, the isotropic result is then refined per dimension
/// (bandwidth_search::per_dimension) on the same backend: pool() and pool_backward() on the
/// scaled inputs (on cuda_fused, d <= kMaxGpuBackwardDims).
/// \throws invalid_argument on a bad shape, a bad search (grid_size < 3, h_min >= h_max, a
///         non-positive or non-finite end or tolerance), non-finite input (check_finite), or
///         backend::cuda_unfused (or d > kMaxGpuBackwardDims on cuda_fused with
///         per_dimension); cuda_error as loo_cv_error.
bandwidth_selection select_bandwidth(const_view x, const_view y,
                                     const bandwidth_search& search = {},
                                     const options& opts = {});

}  // namespace attnpool
