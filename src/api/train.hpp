// The leave-one-out minimiser behind train_parametric (train_method::quasi_newton) and
// select_bandwidth's per-dimension search: both minimise the mean leave-one-out error over
// weights w = 1 / h, one or one per input dimension.
#pragma once

#include <attnpool/learn.hpp>

#include <vector>

namespace attnpool::detail {

struct loo_search {
  std::size_t max_epochs = 100;
  double tolerance = 1e-4;  // on max_c |dL/d ln w_c| / L
  // Optional bounds on each w_c (empty: none beyond the float32 range of x * w).
  std::vector<double> w_lo, w_hi;
  // Scan the common scale before the first step (select_bandwidth starts at the best scale
  // already and skips it).
  bool scan_first = true;
  // Descend again from the slices through the stopping point (several weights; train.cpp says
  // why). select_bandwidth descends from two starts without them and restarts from the lower.
  bool restarts = true;
};

// Minimises from fit.w (each > 0, inside the bounds, 1 or x.cols values) and fills fit: w, loss
// history, final_loss, gradient, stop, evaluations. The arguments are validated by the caller;
// run_opts.backend is resolved (cpu, reference or cuda_fused).
void minimise_loo(const_view x, const_view y, const loo_search& search, const options& run_opts,
                  parametric_fit& fit);

}  // namespace attnpool::detail
