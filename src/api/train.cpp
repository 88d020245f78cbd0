// The book's parametric attention pooling, trained by full-batch gradient descent.
// Built on pool() and pool_backward(): score -((q - k) * w)^2 / 2 is the Gaussian score with
// bandwidth 1 on the scaled inputs x * w, so dL/dw_c follows from the gradients with respect to
// the scaled queries and keys by the chain rule, and the engines need no second kernel.
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>

#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <cmath>
#include <random>

namespace attnpool {
namespace {

// Uniform on [0, 1) from the top 53 bits: the same numbers on every standard library (unlike
// std::uniform_real_distribution).
double unit_uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

parametric_fit train_parametric(const_view x, const_view y, const train_options& train,
                                const options& opts) {
  constexpr const char* fn = "train_parametric";
  // One backend for every pool() and pool_backward() call of the run (automatic resolved once).
  options run_opts = opts;
  run_opts.backend =
      detail::choose_backend({fn, detail::entry_point::learning, opts.backend, x.cols});
  ATTNPOOL_EXPECTS(x.rows >= 2, fn, ": x.rows (n) must be >= 2 for leave-one-out, got ", x.rows);
  ATTNPOOL_EXPECTS(y.rows == x.rows, fn, ": y.rows must equal x.rows (n = ", x.rows, "), got ",
                   y.rows);
  ATTNPOOL_EXPECTS(x.cols >= 1 && y.cols >= 1, fn, ": x and y need >= 1 column, got ", x.cols,
                   " and ", y.cols);
  ATTNPOOL_EXPECTS(std::isfinite(train.learning_rate) && train.learning_rate > 0.0, fn,
                   ": learning_rate must be finite and > 0, got ", train.learning_rate);
  const std::size_t n = x.rows, d = x.cols, dv = y.cols;
  const std::size_t nw = train.per_dimension ? d : 1;
  if (opts.check_finite) {
    detail::check_finite_host(fn, "x", x);
    detail::check_finite_host(fn, "y", y);
  }

  parametric_fit fit;
  if (train.initial_w.empty()) {
    std::mt19937_64 rng(train.seed);
    for (std::size_t c = 0; c < nw; ++c) fit.w.push_back(unit_uniform(rng));
  } else {
    ATTNPOOL_EXPECTS(train.initial_w.size() == nw, fn, ": initial_w must hold ", nw,
                     " value(s), got ", train.initial_w.size());
    for (double w : train.initial_w)
      ATTNPOOL_EXPECTS(std::isfinite(w), fn, ": initial_w must be finite, got ", w);
    fit.w = train.initial_w;
  }

  std::vector<float> xs(n * d), yhat(n * dv), dout(n * dv), dq(n * d), dk(n * d);
  pool_params params{1.0};
  params.mask = mask::leave_one_out;
  // The loss at the current w; with `grad`, also dL/dw into it.
  auto evaluate = [&](std::vector<double>* grad) {
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < d; ++c)
        xs[i * d + c] = static_cast<float>(static_cast<double>(x(i, c)) * fit.w[nw == 1 ? 0 : c]);
    const const_view xv{xs.data(), n, d};
    pool(xv, xv, y, mutable_view{yhat.data(), n, dv}, params, run_opts);
    double loss = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < dv; ++c) {
        const double e = static_cast<double>(yhat[i * dv + c]) - static_cast<double>(y(i, c));
        loss += e * e;
        dout[i * dv + c] = static_cast<float>(2.0 * e);
      }
    if (grad == nullptr) return loss;
    pool_gradients g;
    g.queries = mutable_view{dq.data(), n, d};
    g.keys = mutable_view{dk.data(), n, d};
    pool_backward(xv, xv, y, const_view{dout.data(), n, dv}, g, params, run_opts);
    grad->assign(nw, 0.0);
    // x * w feeds both the queries and the keys: dL/dw_c = sum_i (dq_ic + dk_ic) x_ic.
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < d; ++c)
        (*grad)[nw == 1 ? 0 : c] += (static_cast<double>(dq[i * d + c]) +
                                     static_cast<double>(dk[i * d + c])) *
                                    static_cast<double>(x(i, c));
    return loss;
  };

  std::vector<double> grad;
  for (std::size_t e = 0; e < train.epochs; ++e) {
    fit.loss.push_back(evaluate(&grad));
    for (std::size_t c = 0; c < nw; ++c) fit.w[c] -= train.learning_rate * grad[c];
    for (double w : fit.w)
      ATTNPOOL_EXPECTS(std::isfinite(w), fn, ": w diverged to ", w, " at epoch ", e,
                       "; lower the learning_rate");
  }
  fit.final_loss = evaluate(nullptr);
  return fit;
}

}  // namespace attnpool
