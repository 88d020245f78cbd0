// The book's parametric attention pooling, trained on the leave-one-out loss.
// Built on pool() and pool_backward(): score -((q - k) * w)^2 / 2 is the Gaussian score with
// bandwidth 1 on the scaled inputs x * w, so dL/dw_c follows from the gradients with respect to
// the scaled queries and keys by the chain rule, and the engines need no second kernel.
// Two optimisers share that evaluation: BFGS on ln w (the default, which converges) and the
// book's fixed-step gradient descent on w (kept to reproduce the book).
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>

#include "src/api/guarded_output.hpp"
#include "src/api/train.hpp"
#include "src/validate/backend.hpp"
#include "src/validate/validate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace attnpool {
namespace {

// Uniform on [0, 1) from the top 53 bits: the same numbers on every standard library (unlike
// std::uniform_real_distribution).
double unit_uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// The summed leave-one-out loss L(w) and dL/dw, one pool() (+ pool_backward()) per call, on the
// columns of x centred in double first: distances do not change, but float32 keeps more of
// them where the data sit far from 0.
class loo_objective {
 public:
  loo_objective(const_view x, const_view y, std::size_t nw, const options& opts)
      : x_(x), y_(y), nw_(nw), opts_(opts), mean_(x.cols, 0.0), spread_(nw, 0.0),
        xs_(x.rows * x.cols), yhat_(x.rows * y.cols), dout_(x.rows * y.cols), dq_(x.rows * x.cols),
        dk_(x.rows * x.cols) {
    params_.mask = mask::leave_one_out;
    const std::size_t n = x.rows, d = x.cols;
    for (std::size_t c = 0; c < d; ++c) {
      for (std::size_t i = 0; i < n; ++i) mean_[c] += static_cast<double>(x(i, c));
      mean_[c] /= static_cast<double>(n);
      for (std::size_t i = 0; i < n; ++i) {
        double& s = spread_[nw == 1 ? 0 : c];
        s = std::max(s, std::fabs(static_cast<double>(x(i, c)) - mean_[c]));
      }
    }
  }

  // max_i |x_ic - mean_c| over the coordinates that weight c scales (0 if they are all equal).
  double spread(std::size_t c) const { return spread_[c]; }
  std::size_t evaluations() const { return evaluations_; }

  // The common factor lambda that minimises the leave-one-out error of the inputs scaled by
  // w * lambda, over `points` log-spaced factors (the scaled inputs' bandwidth 1 / lambda from
  // 1e-3 to 10 times their largest range) and lambda = 1, in one loo_cv_error sweep. Returns 1
  // unless another factor is lower by more than 1e-6 of the loss (or the inputs are all equal).
  double scale_scan(const std::vector<double>& w, std::size_t points) {
    const std::size_t n = x_.rows, d = x_.cols;
    scale(w);
    double range = 0.0;
    for (std::size_t c = 0; c < d; ++c) {
      float lo = xs_[c], hi = xs_[c];
      for (std::size_t i = 0; i < n; ++i) {
        lo = std::min(lo, xs_[i * d + c]);
        hi = std::max(hi, xs_[i * d + c]);
      }
      range = std::max(range, static_cast<double>(hi) - static_cast<double>(lo));
    }
    if (!(range > 0.0) || !std::isfinite(range)) return 1.0;
    std::vector<double> hs(points + 1);
    const double u0 = std::log(range * 1e-3), step = std::log(1e4) / static_cast<double>(points - 1);
    for (std::size_t k = 0; k < points; ++k) hs[k] = std::exp(u0 + step * static_cast<double>(k));
    hs[points] = 1.0;
    options unchecked = opts_;
    unchecked.check_finite = false;  // x and y were checked once; xs is finite by construction
    const std::vector<double> cv = loo_cv_error(const_view{xs_.data(), n, d}, y_, hs, unchecked);
    evaluations_ += hs.size();
    std::size_t best = points;
    for (std::size_t k = 0; k < points; ++k)
      if (cv[k] < cv[best]) best = k;
    return cv[best] < cv[points] * (1.0 - 1e-6) ? 1.0 / hs[best] : 1.0;
  }

  // L at w; with `grad`, dL/dw into it.
  double operator()(const std::vector<double>& w, std::vector<double>* grad) {
    ++evaluations_;
    const std::size_t n = x_.rows, d = x_.cols, dv = y_.cols;
    scale(w);
    const const_view xv{xs_.data(), n, d};
    pool(xv, xv, y_, mutable_view{yhat_.data(), n, dv}, params_, opts_);
    double loss = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < dv; ++c) {
        const double e = static_cast<double>(yhat_[i * dv + c]) - static_cast<double>(y_(i, c));
        loss += e * e;
        dout_[i * dv + c] = static_cast<float>(2.0 * e);
      }
    if (grad == nullptr) return loss;
    pool_gradients g;
    g.queries = mutable_view{dq_.data(), n, d};
    g.keys = mutable_view{dk_.data(), n, d};
    pool_backward(xv, xv, y_, const_view{dout_.data(), n, dv}, g, params_, opts_);
    grad->assign(nw_, 0.0);
    // (x - mean) * w feeds both the queries and the keys:
    // dL/dw_c = sum_i (dq_ic + dk_ic) (x_ic - mean_c).
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < d; ++c)
        (*grad)[nw_ == 1 ? 0 : c] +=
            (static_cast<double>(dq_[i * d + c]) + static_cast<double>(dk_[i * d + c])) *
            (static_cast<double>(x_(i, c)) - mean_[c]);
    return loss;
  }

 private:
  // xs = (x - mean) * w.
  void scale(const std::vector<double>& w) {
    for (std::size_t i = 0; i < x_.rows; ++i)
      for (std::size_t c = 0; c < x_.cols; ++c)
        xs_[i * x_.cols + c] =
            static_cast<float>((static_cast<double>(x_(i, c)) - mean_[c]) * w[nw_ == 1 ? 0 : c]);
  }

  const_view x_, y_;
  std::size_t nw_;
  options opts_;
  pool_params params_{1.0};
  std::vector<double> mean_, spread_;
  std::vector<float> xs_, yhat_, dout_, dq_, dk_;
  std::size_t evaluations_ = 0;
};

// The book's run: w -= lr * dL/dw on the summed loss, exactly max_epochs times. The loss and its
// gradient come from targets scaled by 2^-shift (ys) and are unscaled in double before the step,
// so that targets near float32's range take the book's steps too, instead of overflowing the
// float gradient. A step that leaves w, or the scaled inputs (x - mean) w, outside what float32
// holds stops the run with a named error.
void train_book_sgd(const char* fn, const train_options& train, loo_objective& loss,
                    const detail::scaled_targets& ys, parametric_fit& fit) {
  const auto evaluate = [&] {
    const double l = ys.unscale_loss(loss(fit.w, &fit.gradient));
    for (double& g : fit.gradient) g = ys.unscale_loss(g);
    return l;
  };
  for (std::size_t e = 0; e < train.max_epochs; ++e) {
    fit.loss.push_back(evaluate());
    for (std::size_t c = 0; c < fit.w.size(); ++c) fit.w[c] -= train.learning_rate * fit.gradient[c];
    for (std::size_t c = 0; c < fit.w.size(); ++c)
      ATTNPOOL_EXPECTS(std::isfinite(fit.w[c]) &&
                           std::fabs(fit.w[c]) * loss.spread(c) <=
                               std::numeric_limits<float>::max(),
                       fn, ": w diverged to ", fit.w[c], " at epoch ", e,
                       "; lower the learning_rate");
  }
  fit.final_loss = evaluate();
  fit.stop = train_stop::max_epochs;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t c = 0; c < a.size(); ++c) s += a[c] * b[c];
  return s;
}

double max_abs(const std::vector<double>& a) {
  double m = 0.0;
  for (double v : a) m = std::max(m, std::fabs(v));
  return m;
}

// Steps are capped at e^2 ~ 7.4x in any w: far enough to cross the loss's scale in a few steps,
// near enough that the secant curvature of one step says something about the next.
constexpr double kMaxStep = 2.0;
// Armijo's sufficient-decrease constant.
constexpr double kArmijo = 1e-4;
// float32 evaluations of the loss scatter by ~1e-7 of it between nearby w, and where the scores
// are large (w ~ 1e3 on unit-scale data) the float32 gradient is rounding noise that can point
// uphill. A step must therefore lower the loss by more than 1e-6 of it to count, so noise never
// drives the search; near a minimum that stops it within ~sqrt(2e-6 / L'') in ln w (~1e-3).
constexpr double kNoise = 1e-6;
// Steps shorter than this in ln w (0.01 % in w) are not worth an evaluation: a quasi-Newton step
// this short means convergence, and the line search halves no further.
constexpr double kStepTol = 1e-4;
// The scale scan: 64 common factors, log-spaced so that the scaled inputs' bandwidth spans
// [1e-3, 10] times their largest range, select_bandwidth's default grid (0.15 apart in ln w:
// its nearest point to a minimum is within ~0.3 % of the loss there on the book's data).
constexpr std::size_t kScanPoints = 64;
// The dimension scan's "off": the weighted inputs of a dimension spread over 1e-3, so that its
// squared distances change every score by at most ~(2e-3)^2 / 2 = 2e-6.
constexpr double kOffSpread = 1e-3;
// The restarts' slice points, in ln w, and the margin above the stopping point's loss within
// which a slice point is descended from (the restarts that reached a lower minimum started up to
// 24 % above it).
constexpr double kSliceSteps[] = {-1.0, -0.5, 0.5, 1.0};
constexpr double kRestartMargin = 0.5;
// Descents that return this close (in every ln w, ~10 % in w) to a known minimum stop: they are
// converging on it (the line search's shortest steps are 1e-4, minima ~1e-3 wide).
constexpr double kSameBasin = 0.1;
// A restart that lowers the loss by more than this (a tenth of what the per-dimension test
// resolves) starts another round; smaller gains, of ~1e-5, went on for round after round at
// d = 16, each costing as much as the first. The rounds are capped all the same.
constexpr double kRoundGain = 1e-4;
constexpr std::size_t kMaxRestartRounds = 10;

}  // namespace

// BFGS on u = ln w, on the mean loss, with the scale scan at the start and at stationary points
// (learn.hpp).
void detail::minimise_loo(const_view x, const_view y, const loo_search& search,
                          const options& run_opts, parametric_fit& fit) {
  const std::size_t nw = fit.w.size();
  loo_objective objective(x, y, nw, run_opts);
  const double mean = 1.0 / (static_cast<double>(y.rows) * static_cast<double>(y.cols));
  // u stays where x * w is neither below 1e-12 (that dimension no longer matters) nor above 1e12
  // (float32 squared distances of 1e24 still have room under FLT_MAX ~ 3e38), and inside the
  // caller's bounds.
  std::vector<double> lo(nw), hi(nw);
  for (std::size_t c = 0; c < nw; ++c) {
    const double s = objective.spread(c) > 0.0 ? objective.spread(c) : 1.0;
    lo[c] = std::log(1e-12 / s);
    hi[c] = std::log(1e12 / s);
    if (!search.w_lo.empty()) lo[c] = std::max(lo[c], std::log(search.w_lo[c]));
    if (!search.w_hi.empty()) hi[c] = std::min(hi[c], std::log(search.w_hi[c]));
  }
  std::vector<double> w(nw), gw;
  // f(u) (mean loss), and with `gu`, df/du = w df/dw.
  auto f = [&](const std::vector<double>& u, std::vector<double>* gu) {
    for (std::size_t c = 0; c < nw; ++c) w[c] = std::exp(u[c]);
    const double v = objective(w, gu != nullptr ? &gw : nullptr) * mean;
    if (gu != nullptr) {
      gu->resize(nw);
      for (std::size_t c = 0; c < nw; ++c) (*gu)[c] = gw[c] * mean * w[c];
    }
    return v;
  };
  auto clamp = [&](std::vector<double>& u) {
    for (std::size_t c = 0; c < nw; ++c) u[c] = std::clamp(u[c], lo[c], hi[c]);
  };

  std::vector<double> u(nw), g, v(nw), gv, p(nw), s(nw), yk(nw), hy(nw);
  for (std::size_t c = 0; c < nw; ++c) u[c] = std::log(fit.w[c]);
  clamp(u);
  double fu = f(u, &g);
  std::vector<double> H;  // the inverse Hessian estimate, nw x nw; empty until a curvature pair
  // The scale scan: every w times the best of 64 common factors, found in one fused sweep; taken
  // if clearly lower (then the curvature learnt so far no longer applies).
  auto scan = [&] {
    for (std::size_t c = 0; c < nw; ++c) w[c] = std::exp(u[c]);
    const double factor = objective.scale_scan(w, kScanPoints);
    if (factor == 1.0) return false;
    for (std::size_t c = 0; c < nw; ++c) v[c] = u[c] + std::log(factor);
    clamp(v);
    const double fv = f(v, &gv);
    if (!(fv < fu * (1.0 - kNoise))) return false;
    u = v;
    fu = fv;
    g = gv;
    H.clear();
    return true;
  };
  // The dimension scan (several weights): an input that does not help is best switched off
  // (w_c -> 0), but the loss is flat in u_c there, and a descent from an isotropic start can stop
  // in a local minimum before it: on 100 points of 2-D data with one irrelevant input, 1 seed in
  // ~150 stopped at both h ~ 0.25 with a loss 20 % above that without the input. Each weight in
  // turn is set where its inputs' spread times w_c is kOffSpread (score changes of ~1e-6, or the
  // caller's bound) and the clearly lowest of these losses is taken.
  std::vector<double> off(nw);
  for (std::size_t c = 0; c < nw; ++c) {
    const double spread = objective.spread(c) > 0.0 ? objective.spread(c) : 1.0;
    off[c] = std::clamp(std::log(kOffSpread / spread), lo[c], hi[c]);
  }
  auto dimension_scan = [&] {
    if (nw < 2) return false;
    std::size_t best = nw;
    double fbest = fu * (1.0 - kNoise);
    for (std::size_t c = 0; c < nw; ++c) {
      if (!(u[c] > off[c])) continue;  // already off
      v = u;
      v[c] = off[c];
      const double fv = f(v, nullptr);
      if (fv < fbest) {
        fbest = fv;
        best = c;
      }
    }
    if (best == nw) return false;
    u[best] = off[best];
    fu = f(u, &g);
    H.clear();
    return true;
  };
  // Start at the best scale along the starting direction, as select_bandwidth's grid would: the
  // descent then begins in the basin of the lowest minimum, not on a plateau.
  if (search.scan_first && search.max_epochs > 0) scan();
  // One descent from (u, fu, g): BFGS steps until no step counts, then the scale and dimension
  // scans, for at most max_epochs iterations. A restart's descent skips the scans, and stops
  // with `rejoined` set once it comes within kSameBasin in every ln w of a minimum in `known`:
  // it is converging on a minimum already found.
  std::size_t epoch = 0;
  bool rejoined = false;
  std::vector<std::vector<double>> known;
  auto descend = [&](bool restart) {
    rejoined = false;
    epoch = 0;
    H.clear();
    for (; epoch < search.max_epochs; ++epoch) {
      fit.loss.push_back(fu);
      const double gmax = max_abs(g);
      bool small_gradient = gmax <= search.tolerance * fu;
      // Where the loss is 0 nothing is lower.
      if (fu == 0.0) small_gradient = true;
      bool moved = false;
      if (!small_gradient) {
        // The direction: -H g, or -g scaled to a unit step before any curvature is known (or when
        // H's direction does not descend, which rounding can cause).
        if (!H.empty())
          for (std::size_t a = 0; a < nw; ++a) {
            p[a] = 0.0;
            for (std::size_t b = 0; b < nw; ++b) p[a] -= H[a * nw + b] * g[b];
          }
        if (H.empty() || dot(g, p) >= 0.0) {
          H.clear();
          for (std::size_t c = 0; c < nw; ++c) p[c] = -g[c] / gmax;
        }
        const double pmax = max_abs(p);
        if (!H.empty() && pmax <= kStepTol) small_gradient = true;
        if (pmax > kMaxStep)
          for (double& pc : p) pc *= kMaxStep / pmax;
        for (double alpha = 1.0; !moved && !small_gradient && alpha * max_abs(p) >= kStepTol;
             alpha *= 0.5) {
          for (std::size_t c = 0; c < nw; ++c) v[c] = u[c] + alpha * p[c];
          clamp(v);
          for (std::size_t c = 0; c < nw; ++c) s[c] = v[c] - u[c];
          if (max_abs(s) == 0.0) break;  // clamped against a bound: no step left
          const double fv = f(v, &gv);
          if (!(fv < fu - std::max(kArmijo * std::max(0.0, -dot(g, s)), kNoise * fu))) continue;
          moved = true;
          for (std::size_t c = 0; c < nw; ++c) yk[c] = gv[c] - g[c];
          const double sy = dot(s, yk);
          // The update keeps H positive definite only with positive curvature along s.
          if (sy > 1e-12 * std::sqrt(dot(s, s) * dot(yk, yk))) {
            if (H.empty()) {
              // Start from the scaled identity (s.y / y.y) I (Nocedal and Wright, eq. 6.20).
              H.assign(nw * nw, 0.0);
              for (std::size_t c = 0; c < nw; ++c) H[c * nw + c] = sy / dot(yk, yk);
            }
            // H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T, rho = 1 / s.y.
            const double rho = 1.0 / sy;
            for (std::size_t a = 0; a < nw; ++a) {
              hy[a] = 0.0;
              for (std::size_t b = 0; b < nw; ++b) hy[a] += H[a * nw + b] * yk[b];
            }
            const double yhy = dot(yk, hy);
            for (std::size_t a = 0; a < nw; ++a)
              for (std::size_t b = 0; b < nw; ++b)
                H[a * nw + b] +=
                    -rho * (hy[a] * s[b] + s[a] * hy[b]) + (rho * rho * yhy + rho) * s[a] * s[b];
          }
          u = v;
          fu = fv;
          g = gv;
        }
        if (moved && restart) {
          for (const std::vector<double>& m : known) {
            double far = 0.0;
            for (std::size_t c = 0; c < nw; ++c) far = std::max(far, std::fabs(u[c] - m[c]));
            rejoined = rejoined || far < kSameBasin;
          }
          if (rejoined) return train_stop::no_progress;
        }
        if (moved) continue;
      }
      // A stationary point (or no descent left): a plateau (every weight one-hot, or all equal)
      // or a local minimum of the leave-one-out curve is left by the scale scan.
      if (!restart && (scan() || dimension_scan())) continue;
      ++epoch;
      return small_gradient ? train_stop::converged : train_stop::no_progress;
    }
    return train_stop::max_epochs;
  };
  fit.stop = descend(false);
  // Restarts (several weights): the leave-one-out surface of a few hundred points is bumpy, and
  // the descent can stop in a basin whose minimum lies a few percent above another's, separated
  // by a ridge that no move of one weight alone crosses (the others must follow). A descent from
  // a point of a slice through the stopping point, one weight moved by +-0.5 or +-1 in ln w,
  // does cross it: on the per-dimension test's data 1 draw in 100 stopped 1-13 % above the
  // brute-force optimum, and every one reached it from one of these points, whose own loss lay
  // up to 24 % above the stopping point's. They are descended from lowest first, without the
  // scans, each stopped once it rejoins a minimum already found, until one ends lower by more
  // than kRoundGain; the lowest end point is then scanned, and its slices are tried next.
  for (std::size_t round = 0; search.restarts && nw >= 2 && fit.stop != train_stop::max_epochs &&
                              round < kMaxRestartRounds;
       ++round) {
    struct candidate {
      double loss;
      std::size_t c;
      double uc;
    };
    std::vector<candidate> candidates;
    for (std::size_t c = 0; c < nw; ++c)
      for (const double step : kSliceSteps) {
        const double uc = std::clamp(u[c] + step, lo[c], hi[c]);
        if (uc == u[c]) continue;  // against a bound
        v = u;
        v[c] = uc;
        const double fv = f(v, nullptr);
        // A point whose loss is within kRoundGain of the stopping point's lies on a plateau of
        // that weight (an input switched off, or nearly): the descent from it moves the others
        // as from the stopping point, and ends no lower by a gain that matters.
        if (fv < fu * (1.0 + kRestartMargin) && std::fabs(fv - fu) > kRoundGain * fu)
          candidates.push_back({fv, c, uc});
      }
    std::sort(candidates.begin(), candidates.end(),
              [](const candidate& a, const candidate& b) { return a.loss < b.loss; });
    const std::vector<double> best_u = u, best_g = g, best_loss = fit.loss;
    const double best_f = fu;
    known.push_back(best_u);
    // The lowest clearly lower end point of this round's restarts.
    std::vector<double> low_u, low_g, low_loss;
    double low_f = best_f * (1.0 - kNoise);
    train_stop low_stop = fit.stop;
    for (const candidate& cand : candidates) {
      u = best_u;
      u[cand.c] = cand.uc;
      fu = f(u, &g);
      fit.loss = best_loss;
      const train_stop stop = descend(true);
      if (rejoined) continue;
      known.push_back(u);
      if (fu < low_f) {
        low_u = u;
        low_g = g;
        low_loss = fit.loss;
        low_f = fu;
        low_stop = stop;
      }
      if (fu < best_f * (1.0 - kRoundGain)) break;
    }
    if (low_u.empty()) {
      u = best_u;
      g = best_g;
      fu = best_f;
      fit.loss = best_loss;
      break;
    }
    u = low_u;
    g = low_g;
    fu = low_f;
    fit.loss = low_loss;
    fit.stop = low_stop == train_stop::max_epochs ? low_stop : descend(false);
    if (!(low_f < best_f * (1.0 - kRoundGain))) break;
  }
  for (std::size_t c = 0; c < nw; ++c) fit.w[c] = std::exp(u[c]);
  fit.final_loss = fu;
  fit.gradient.resize(nw);
  for (std::size_t c = 0; c < nw; ++c) fit.gradient[c] = g[c] / fit.w[c];
  fit.evaluations = objective.evaluations();
}

const char* to_string(train_method m) noexcept {
  switch (m) {
    case train_method::quasi_newton: return "quasi_newton";
    case train_method::book_sgd: return "book_sgd";
  }
  return "unknown";
}

const char* to_string(train_stop s) noexcept {
  switch (s) {
    case train_stop::converged: return "converged";
    case train_stop::no_progress: return "no_progress";
    case train_stop::max_epochs: return "max_epochs";
  }
  return "unknown";
}

parametric_fit train_parametric(const_view x, const_view y, const train_options& train,
                                const options& opts) {
  constexpr const char* fn = "train_parametric";
  // Everything is checked before any memory is read or allocated.
  // One backend for every pool() and pool_backward() call of the run (automatic resolved once).
  options run_opts = opts;
  run_opts.backend =
      detail::choose_backend({fn, detail::entry_point::learning, opts.backend, x.cols});
  detail::check_view(fn, "x", x);
  detail::check_view(fn, "y", y);
  ATTNPOOL_EXPECTS(x.rows >= 2, fn, ": x.rows (n) must be >= 2 for leave-one-out, got ", x.rows);
  ATTNPOOL_EXPECTS(y.rows == x.rows, fn, ": y.rows must equal x.rows (n = ", x.rows, "), got ",
                   y.rows);
  ATTNPOOL_EXPECTS(x.cols >= 1 && y.cols >= 1, fn, ": x and y need >= 1 column, got ", x.cols,
                   " and ", y.cols);
  const bool book = train.method == train_method::book_sgd;
  ATTNPOOL_EXPECTS(book || train.method == train_method::quasi_newton, fn,
                   ": train.method must be quasi_newton or book_sgd, got ",
                   static_cast<int>(train.method));
  ATTNPOOL_EXPECTS(std::isfinite(train.learning_rate) && train.learning_rate > 0.0, fn,
                   ": learning_rate must be finite and > 0, got ", train.learning_rate);
  ATTNPOOL_EXPECTS(std::isfinite(train.tolerance) && train.tolerance > 0.0, fn,
                   ": tolerance must be finite and > 0, got ", train.tolerance);
  const std::size_t nw = train.per_dimension ? x.cols : 1;
  if (!train.initial_w.empty()) {
    ATTNPOOL_EXPECTS(train.initial_w.size() == nw, fn, ": initial_w must hold ", nw,
                     " value(s), got ", train.initial_w.size());
    for (double w : train.initial_w) {
      ATTNPOOL_EXPECTS(std::isfinite(w), fn, ": initial_w must be finite, got ", w);
      ATTNPOOL_EXPECTS(book || w > 0.0, fn,
                       ": initial_w must be > 0 for quasi_newton (it trains ln w), got ", w);
    }
  }
  if (opts.check_finite) {
    detail::check_finite_host(fn, "x", x);
    detail::check_finite_host(fn, "y", y);
  }

  parametric_fit fit;
  if (train.initial_w.empty()) {
    std::mt19937_64 rng(train.seed);
    // quasi_newton starts isotropic (one draw for every dimension), so that no dimension starts
    // out ignored; the book's per-dimension weights are independent draws.
    const double first = book ? unit_uniform(rng) : 1.0 - unit_uniform(rng);
    fit.w.assign(nw, first);
    for (std::size_t c = 1; book && c < nw; ++c) fit.w[c] = unit_uniform(rng);
  } else {
    fit.w = train.initial_w;
  }
  // Targets near float32's range are scaled by a power of two; the losses and gradients are
  // reported for the targets as given.
  const detail::scaled_targets ys(y, x.rows);
  if (book) {
    loo_objective objective(x, ys.view(), nw, run_opts);
    train_book_sgd(fn, train, objective, ys, fit);
    fit.evaluations = objective.evaluations();
    return fit;
  }
  detail::loo_search search;
  search.max_epochs = train.max_epochs;
  search.tolerance = train.tolerance;
  detail::minimise_loo(x, ys.view(), search, run_opts, fit);
  for (double& l : fit.loss) l = ys.unscale_loss(l);
  fit.final_loss = ys.unscale_loss(fit.final_loss);
  for (double& g : fit.gradient) g = ys.unscale_loss(g);
  return fit;
}

}  // namespace attnpool
